"""Every dashboard page, called as every kind of caller, against a declared allow table.

The pages' counterpart of the JSON API's authorisation matrix: it walks the pages router, so
a new page without an entry in :data:`MATRIX` fails the test. People call with the session
cookie (as a browser does); devices with their Basic credentials. Allowed calls must answer
2xx or a redirect (to the caller's own start page, the login form after logging out, ...),
denied ones 401 (anonymous) or 403, and every allowed read of patient data must write an
audit row.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dashboard_seed import PASSWORD, Seeded, seed
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

from iomt.api.app import create_app
from iomt.api.context import app_context
from iomt.api.pages.routes import router
from iomt.api.pages.session import COOKIE_NAME
from iomt.config import Settings
from iomt.store.db import init_db, session_factory
from iomt.store.models import AuditEntry

CALLERS = (
    "anon",
    "admin",
    "clin_assigned",  # Ada: Alice's clinician
    "clin_unassigned",  # Bob: not Alice's
    "patient_self",  # Alice
    "patient_other",  # Bert
    "device_own",  # Alice's band
    "device_other",  # Bert's band
)
EVERYONE = frozenset(CALLERS)
PEOPLE = frozenset({"admin", "clin_assigned", "clin_unassigned", "patient_self", "patient_other"})
STAFF = frozenset({"admin", "clin_assigned", "clin_unassigned"})
READERS = frozenset({"admin", "clin_assigned", "patient_self"})
STAFF_OF_ALICE = frozenset({"admin", "clin_assigned"})
ADMIN = frozenset({"admin"})
_USER_OF = {
    "admin": "admin",
    "clin_assigned": "ada",
    "clin_unassigned": "bob",
    "patient_self": "alice",
    "patient_other": "bert",
}
_DEVICE_OF = {"device_own": "band-alice", "device_other": "band-bert"}
_unique = itertools.count()


@dataclass
class World:
    """The app, a client, the seeded ids and each caller's headers."""

    client: TestClient
    seeded: Seeded
    sessions: Any
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    csrf: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    """Who may call a page, how to call it, and for whom an allowed call must be audited."""

    allowed: frozenset[str]
    call: Callable[[World, str], tuple[str, dict[str, str] | None]]
    audited: frozenset[str] = frozenset()


def _get(path: Callable[[Seeded], str]) -> Callable[[World, str], tuple[str, None]]:
    return lambda w, _: (path(w.seeded), None)


def _post(
    path: Callable[[Seeded], str], form: Callable[[World, str], dict[str, str]]
) -> Callable[[World, str], tuple[str, dict[str, str]]]:
    return lambda w, caller: (path(w.seeded), {"csrf": w.csrf.get(caller, ""), **form(w, caller)})


def _alice(s: Seeded) -> str:
    return f"/patients/{s.patients['alice']}"


MATRIX: dict[tuple[str, str], Rule] = {
    ("GET", "/"): Rule(EVERYONE, _get(lambda s: "/")),
    ("GET", "/login"): Rule(EVERYONE, _get(lambda s: "/login")),
    ("POST", "/login"): Rule(
        EVERYONE, _post(lambda s: "/login", lambda w, c: {"username": "ada", "password": PASSWORD})
    ),
    ("POST", "/logout"): Rule(EVERYONE, _post(lambda s: "/logout", lambda w, c: {})),
    ("GET", "/ward"): Rule(STAFF, _get(lambda s: "/ward"), audited=STAFF),
    ("GET", "/patients/{patient_id}"): Rule(READERS, _get(_alice), audited=READERS),
    ("GET", "/me"): Rule(PEOPLE, _get(lambda s: "/me"), audited=frozenset({"patient_self"})),
    ("GET", "/studies/{study_id}"): Rule(
        READERS, _get(lambda s: f"/studies/{s.study_id}"), audited=READERS
    ),
    ("GET", "/studies/{study_id}/image"): Rule(
        READERS, _get(lambda s: f"/studies/{s.study_id}/image"), audited=READERS
    ),
    ("GET", "/studies/{study_id}/findings/{finding_id}/heatmap.png"): Rule(
        READERS,
        _get(lambda s: f"/studies/{s.study_id}/findings/{s.finding_id}/heatmap.png"),
        audited=READERS,
    ),
    ("GET", "/alerts"): Rule(STAFF, _get(lambda s: "/alerts"), audited=STAFF_OF_ALICE),
    ("GET", "/alerts/stream"): Rule(STAFF, _get(lambda s: "/alerts/stream?max_seconds=0")),
    ("POST", "/alerts/{alert_id}/ack"): Rule(
        STAFF_OF_ALICE, _post(lambda s: f"/alerts/{s.open_alert_id}/ack", lambda w, c: {})
    ),
    ("GET", "/admin"): Rule(ADMIN, _get(lambda s: "/admin")),
    ("POST", "/admin/patients"): Rule(
        ADMIN,
        _post(
            lambda s: "/admin/patients",
            lambda w, c: {"name": "New Patient", "mrn": f"MRN-N{next(_unique)}"},
        ),
    ),
    ("POST", "/admin/devices"): Rule(
        ADMIN,
        _post(
            lambda s: "/admin/devices",
            lambda w, c: {"device_id": f"band-n{next(_unique)}", "kind": "wearable"},
        ),
    ),
    ("POST", "/admin/assignments"): Rule(
        ADMIN,
        _post(
            lambda s: "/admin/assignments",
            lambda w, c: {
                "clinician_id": str(w.seeded.users["bob"]),
                "patient_id": str(w.seeded.patients["cara"]),
            },
        ),
    ),
    ("POST", "/admin/users"): Rule(
        ADMIN,
        _post(
            lambda s: "/admin/users",
            lambda w, c: {"username": f"nurse{next(_unique)}", "password": PASSWORD},
        ),
    ),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The real app on a seeded database, with a session cookie per person."""
    data_dir: Path = tmp_path_factory.mktemp("iomt-pages-authz")
    settings = Settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'iomt.db'}",
        secret_key=SecretStr("pages-authz-test-key-" + "y" * 32),
    )
    engine = init_db(settings.resolved_database_url)
    sessions = session_factory(engine)
    with sessions() as session:
        seeded = seed(session, image_root=data_dir / "images")
    app = create_app(settings, engine=engine)
    tokens = app_context(app).tokens
    with TestClient(app) as client:
        w = World(client, seeded, sessions)
        w.headers["anon"] = {}
        for caller, username in _USER_OF.items():
            role = {"admin": "admin", "ada": "clinician", "bob": "clinician"}.get(
                username, "patient"
            )
            token, _ = tokens.issue_for_user(user_id=seeded.users[username], role=role)
            w.headers[caller] = {"Cookie": f"{COOKIE_NAME}={token}"}
            w.csrf[caller] = hashlib.sha256(token.encode()).hexdigest()[:32]
        for caller, device_id in _DEVICE_OF.items():
            basic = f"{device_id}:{seeded.device_secrets[device_id]}".encode()
            w.headers[caller] = {"Authorization": "Basic " + base64.b64encode(basic).decode()}
        yield w
    engine.dispose()


def _page_routes() -> set[tuple[str, str]]:
    found = set()
    for context in iter_route_contexts(router.routes):
        for method in (getattr(context.original_route, "methods", None) or set()) - {"HEAD"}:
            found.add((method, str(context.path)))
    return found


def _audit_rows(w: World) -> int:
    with w.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(AuditEntry)) or 0)


def test_every_page_has_a_declared_rule() -> None:
    routes = _page_routes()
    assert not sorted(routes - MATRIX.keys()), "pages without an entry in MATRIX"
    assert not sorted(MATRIX.keys() - routes), "MATRIX entries for pages that no longer exist"


def test_every_page_allows_and_denies_as_declared(world: World) -> None:
    failures = []
    for (method, path), rule in sorted(MATRIX.items()):
        for caller in CALLERS:
            url, form = rule.call(world, caller)
            before = _audit_rows(world)
            world.client.cookies.clear()
            headers = {"Accept": "application/json", **world.headers[caller]}
            if caller in world.cookies:
                headers["Cookie"] = f"{COOKIE_NAME}={world.cookies[caller]}"
            response = world.client.request(
                method, url, data=form, headers=headers, follow_redirects=False
            )
            allowed = caller in rule.allowed
            expected = "2xx/3xx" if allowed else ("401" if caller == "anon" else "403")
            ok = (
                200 <= response.status_code < 400
                if allowed
                else response.status_code == int(expected)
            )
            if not ok:
                failures.append(
                    f"{method} {path} as {caller}: {response.status_code} (want {expected}) "
                    f"{response.text[:120]}"
                )
            if allowed and caller in rule.audited and _audit_rows(world) <= before:
                failures.append(f"{method} {path} as {caller}: read without an audit row")
            if not allowed and "Alice" in response.text:
                failures.append(f"{method} {path} as {caller}: the refusal names the patient")
    assert not failures, "\n".join(failures)


def test_static_files_need_no_session(world: World) -> None:
    world.client.cookies.clear()
    response = world.client.get("/static/pages/app.css")
    assert response.status_code == 200 and "text/css" in response.headers["content-type"]
    assert world.client.get("/static/pages/../routes.py").status_code == 404
