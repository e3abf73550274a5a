"""Every route of the app, called as every kind of caller, against a declared allow table.

The test walks ``app.routes``: a route without an entry in :data:`MATRIX` fails it, so a new
route must declare who may call it. For each route and caller it asserts 2xx when allowed,
else 401 (anonymous) or 403; for routes that read patient data it also asserts that each
allowed read wrote an audit row naming the caller.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from api_helpers import World, png_bytes
from authz_pages import PAGE_MATRIX, PageRule, page_request
from fastapi.routing import iter_route_contexts
from sqlalchemy import func, select
from starlette.routing import Mount

from iomt.store import crud
from iomt.store.models import AuditEntry

CALLERS = (
    "anon",
    "admin",
    "clin_assigned",
    "clin_unassigned",
    "patient_self",
    "patient_other",
    "device_own",
    "device_other",
)
EVERYONE = frozenset(CALLERS)
AUTHENTICATED = EVERYONE - {"anon"}
PEOPLE = frozenset({"admin", "clin_assigned", "clin_unassigned", "patient_self", "patient_other"})
ADMIN = frozenset({"admin"})
READERS_OF_P1 = frozenset({"admin", "clin_assigned", "patient_self"})
STAFF_OF_P1 = frozenset({"admin", "clin_assigned"})
DEVICE_OF_P1 = frozenset({"device_own"})
DEVICES = frozenset({"device_own", "device_other"})


@dataclass(frozen=True)
class Call:
    """One HTTP request."""

    url: str
    json: Any = None
    data: dict[str, str] | None = None
    files: dict[str, Any] | None = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    """Who may call a route, how to call it, and whether a call reads patient data."""

    allowed: frozenset[str]
    call: Callable[[World, str], Call]
    audited: bool = False


def _now() -> float:
    return datetime.now(UTC).timestamp()


def _readings(w: World, caller: str) -> Call:
    n = next(w.counter)
    body = {"readings": [{"seq": 10_000 + n, "kind": "heart_rate", "value": 71, "time": _now()}]}
    return Call("/api/devices/dev-a/readings", json=body)


def _observation(w: World, seq: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "identifier": [{"system": "urn:iomt:seq", "value": str(seq)}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{w.p1}"},
        "effectiveDateTime": datetime.now(UTC).isoformat(),
        "valueQuantity": {
            "value": 80,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


def _bundle(w: World, caller: str) -> Call:
    n = next(w.counter)
    entries = [{"resource": _observation(w, 20_000 + 2 * n + i)} for i in range(2)]
    return Call("/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": entries})


def _p1(suffix: str = "") -> Callable[[World, str], Call]:
    return lambda w, _: Call(f"/api/patients/{w.p1}{suffix}")


def _unassign(w: World, caller: str) -> Call:
    with w.context.sessions() as s:  # make sure there is an assignment to remove
        crud.assign_clinician(s, clinician_id=w.ids["clin_spare"], patient_id=w.p1)
        s.commit()
    return Call(f"/api/patients/{w.p1}/clinicians/{w.ids['clin_spare']}")


MATRIX: dict[tuple[str, str], Rule] = {
    ("GET", "/openapi.json"): Rule(EVERYONE, lambda w, _: Call("/openapi.json")),
    ("GET", "/docs"): Rule(EVERYONE, lambda w, _: Call("/docs")),
    ("GET", "/docs/oauth2-redirect"): Rule(EVERYONE, lambda w, _: Call("/docs/oauth2-redirect")),
    ("GET", "/redoc"): Rule(EVERYONE, lambda w, _: Call("/redoc")),
    ("GET", "/healthz"): Rule(EVERYONE, lambda w, _: Call("/healthz")),
    # Logging in needs no prior authentication: everyone may try.
    ("POST", "/api/auth/token"): Rule(
        EVERYONE,
        lambda w, _: Call("/api/auth/token", data={"username": "drA", "password": "clinician-a"}),
    ),
    ("POST", "/api/auth/device-token"): Rule(DEVICES, lambda w, _: Call("/api/auth/device-token")),
    ("GET", "/api/auth/me"): Rule(AUTHENTICATED, lambda w, _: Call("/api/auth/me")),
    ("GET", "/api/users"): Rule(ADMIN, lambda w, _: Call("/api/users")),
    ("POST", "/api/users"): Rule(
        ADMIN,
        lambda w, _: Call(
            "/api/users",
            json={"username": f"u{next(w.counter)}", "password": "password-1", "role": "clinician"},
        ),
    ),
    ("GET", "/api/users/{user_id}"): Rule(
        ADMIN, lambda w, _: Call(f"/api/users/{w.ids['clin_spare']}")
    ),
    ("PATCH", "/api/users/{user_id}"): Rule(
        ADMIN,
        lambda w, _: Call(f"/api/users/{w.ids['clin_spare']}", json={"full_name": "Dr C"}),
    ),
    ("GET", "/api/patients"): Rule(PEOPLE, lambda w, _: Call("/api/patients"), audited=True),
    ("POST", "/api/patients"): Rule(
        ADMIN,
        lambda w, _: Call("/api/patients", json={"name": "New", "mrn": f"M{next(w.counter)}"}),
    ),
    ("GET", "/api/patients/{patient_id}"): Rule(READERS_OF_P1, _p1(), audited=True),
    ("PATCH", "/api/patients/{patient_id}"): Rule(
        ADMIN, lambda w, _: Call(f"/api/patients/{w.p1}", json={"name": "Ada L."})
    ),
    ("PUT", "/api/patients/{patient_id}/clinicians/{user_id}"): Rule(
        ADMIN, lambda w, _: Call(f"/api/patients/{w.p1}/clinicians/{w.ids['clin_spare']}")
    ),
    ("DELETE", "/api/patients/{patient_id}/clinicians/{user_id}"): Rule(ADMIN, _unassign),
    ("GET", "/api/patients/{patient_id}/readings"): Rule(
        READERS_OF_P1, _p1("/readings"), audited=True
    ),
    ("GET", "/api/patients/{patient_id}/verdicts"): Rule(
        READERS_OF_P1, _p1("/verdicts"), audited=True
    ),
    ("GET", "/api/patients/{patient_id}/studies"): Rule(
        READERS_OF_P1, _p1("/studies"), audited=True
    ),
    ("GET", "/api/patients/{patient_id}/studies/{study_id}"): Rule(
        READERS_OF_P1, lambda w, _: Call(f"/api/patients/{w.p1}/studies/{w.study1}"), audited=True
    ),
    ("GET", "/api/patients/{patient_id}/studies/{study_id}/image"): Rule(
        READERS_OF_P1,
        lambda w, _: Call(f"/api/patients/{w.p1}/studies/{w.study1}/image"),
        audited=True,
    ),
    ("GET", "/api/patients/{patient_id}/studies/{study_id}/heatmap"): Rule(
        READERS_OF_P1,
        lambda w, _: Call(f"/api/patients/{w.p1}/studies/{w.study1}/heatmap"),
        audited=True,
    ),
    ("GET", "/api/devices"): Rule(ADMIN, lambda w, _: Call("/api/devices")),
    ("POST", "/api/devices"): Rule(
        ADMIN,
        lambda w, _: Call(
            "/api/devices",
            json={"device_id": f"new-{next(w.counter)}", "kind": "wearable", "patient_id": w.p1},
        ),
    ),
    ("GET", "/api/devices/{device_id}"): Rule(ADMIN, lambda w, _: Call("/api/devices/dev-a")),
    ("PATCH", "/api/devices/{device_id}"): Rule(
        ADMIN, lambda w, _: Call("/api/devices/dev-spare", json={"active": True})
    ),
    ("POST", "/api/devices/{device_id}/secret"): Rule(
        ADMIN, lambda w, _: Call("/api/devices/dev-spare/secret")
    ),
    ("POST", "/api/devices/{device_id}/readings"): Rule(DEVICE_OF_P1, _readings),
    ("POST", "/api/devices/{device_id}/studies"): Rule(
        DEVICE_OF_P1,
        lambda w, _: Call(
            "/api/devices/dev-a/studies",
            files={"file": ("x.png", png_bytes(100 + next(w.counter)), "image/png")},
            data={"modality": "CR"},
        ),
    ),
    ("GET", "/api/alerts"): Rule(PEOPLE, lambda w, _: Call("/api/alerts"), audited=True),
    ("POST", "/api/alerts/{alert_id}/ack"): Rule(
        STAFF_OF_P1, lambda w, _: Call(f"/api/alerts/{w.alert1}/ack")
    ),
    ("GET", "/api/alerts/stream"): Rule(
        PEOPLE, lambda w, _: Call("/api/alerts/stream?max_seconds=0.01")
    ),
    ("GET", "/api/dead-letters"): Rule(ADMIN, lambda w, _: Call("/api/dead-letters")),
    ("GET", "/api/audit"): Rule(ADMIN, lambda w, _: Call("/api/audit")),
    ("POST", "/fhir/Observation"): Rule(
        DEVICE_OF_P1,
        lambda w, _: Call(
            "/fhir/Observation",
            content=json.dumps(_observation(w, 30_000 + next(w.counter))).encode(),
            headers={"Content-Type": "application/fhir+json"},
        ),
    ),
    ("POST", "/fhir"): Rule(DEVICE_OF_P1, _bundle),
    ("GET", "/fhir/Patient/{patient_id}/$everything"): Rule(
        READERS_OF_P1, lambda w, _: Call(f"/fhir/Patient/{w.p1}/$everything"), audited=True
    ),
    ("GET", "/fhir/Observation"): Rule(
        READERS_OF_P1, lambda w, _: Call(f"/fhir/Observation?patient={w.p1}"), audited=True
    ),
}


#: Prefixes of routes that return patient data: their GETs must be declared ``audited``.
PATIENT_DATA_PREFIXES = ("/api/patients", "/api/alerts", "/fhir")
#: ...except these, with the reason.
NOT_AUDITED_PER_CALL = {
    # audits one row per alert actually streamed (see test_live_feed_streams_only_visible_alerts)
    ("GET", "/api/alerts/stream"),
}


def app_routes(w: World) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves (HEAD is implied by GET).

    Mounted sub-apps (static files) appear as ``("MOUNT", path)``; websocket routes as
    ``("WEBSOCKET", path)``.
    """
    found = set()
    for context in iter_route_contexts(w.app.routes):
        route = context.original_route
        methods = getattr(route, "methods", None)
        if methods is None:
            kind = "MOUNT" if isinstance(route, Mount) else "WEBSOCKET"
            found.add((kind, str(context.path)))
            continue
        for method in methods - {"HEAD"}:
            found.add((method, str(context.path)))
    return found


def _audit_rows(w: World) -> int:
    with w.context.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(AuditEntry)) or 0)


def test_every_route_has_a_declared_rule(world: World) -> None:
    routes = app_routes(world)
    declared = MATRIX.keys() | PAGE_MATRIX.keys()
    missing = sorted(routes - declared)
    stale = sorted(declared - routes)
    assert not missing, (
        f"routes without a rule: {missing}; declare them in MATRIX (JSON API, this file) "
        "or PAGE_MATRIX (dashboard, tests/api/authz_pages.py)"
    )
    assert not stale, f"MATRIX entries for routes that no longer exist: {stale}"
    unaudited = [
        key
        for key, rule in MATRIX.items()
        if key[0] == "GET"
        and key[1].startswith(PATIENT_DATA_PREFIXES)
        and not rule.audited
        and key not in NOT_AUDITED_PER_CALL
    ]
    assert not unaudited, f"patient-data reads not declared audited: {unaudited}"


def test_every_route_allows_and_denies_as_declared(world: World) -> None:
    failures = []
    for method, path in sorted(app_routes(world)):
        if (method, path) in PAGE_MATRIX:
            failures += _check_page(world, method, path, PAGE_MATRIX[(method, path)])
            continue
        rule = MATRIX[(method, path)]
        for caller in CALLERS:
            call = rule.call(world, caller)
            headers = {**world.headers[caller], **call.headers}
            before = _audit_rows(world)
            response = world.client.request(
                method,
                call.url,
                headers=headers,
                json=call.json,
                data=call.data,
                files=call.files,
                content=call.content,
            )
            allowed = caller in rule.allowed
            expected = "2xx" if allowed else ("401" if caller == "anon" else "403")
            ok = (
                200 <= response.status_code < 300
                if allowed
                else response.status_code == int(expected)
            )
            if not ok:
                failures.append(
                    f"{method} {path} as {caller}: {response.status_code} (want {expected}) "
                    f"{response.text[:160]}"
                )
            if allowed and rule.audited and _audit_rows(world) <= before:
                failures.append(f"{method} {path} as {caller}: read without an audit row")
    assert not failures, "\n".join(failures)


def _check_page(w: World, method: str, path: str, rule: PageRule) -> list[str]:
    failures = []
    for caller in CALLERS:
        allowed = caller in rule.allowed
        if allowed and rule.stream:
            continue  # an allowed event stream never ends; its denials are checked
        response = w.client.request(**page_request(w, method, rule, caller))
        w.client.cookies.clear()
        location = response.headers.get("location", "")
        to_login = response.status_code == 303 and location.startswith("/login")
        if allowed:
            ok = 200 <= response.status_code < 300 or (
                response.status_code == 303 and (rule.to_login_ok or not to_login)
            )
            want = "2xx or 303 elsewhere"
        elif caller == "anon":
            ok, want = response.status_code == 401, "401"
        else:
            ok, want = response.status_code == 403, "403"
        if not ok:
            failures.append(
                f"page {method} {path} as {caller}: {response.status_code} {location} (want {want})"
            )
    return failures
