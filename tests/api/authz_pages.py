"""Allow table of the dashboard's HTML routes, for the route-walking authorisation test.

Pages authenticate with the session cookie, not a header: callers that are people send their
JWT as the ``iomt_session`` cookie (and the CSRF token derived from it on forms); devices
and anonymous callers have no session. A denied page answers 303 to ``/login`` when there is
no session, and 403 when the signed-in person may not see it. Keep this table in step with
``iomt.api.pages.routes``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from api_helpers import World

from iomt.store import crud

STAFF = frozenset({"admin", "clin_assigned", "clin_unassigned"})
READERS_OF_P1 = frozenset({"admin", "clin_assigned", "patient_self"})
PATIENTS = frozenset({"patient_self", "patient_other"})
PEOPLE = STAFF | PATIENTS
EVERYONE = PEOPLE | {"anon", "device_own", "device_other"}


@dataclass(frozen=True)
class PageCall:
    """One page request; ``form`` gets the caller's CSRF token added."""

    url: str
    form: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PageRule:
    """Who may open a page; ``stream``: endless response, so only denials are checked."""

    allowed: frozenset[str]
    call: Callable[[World], PageCall]
    stream: bool = False
    #: Allowed calls may answer with a redirect to the login page (e.g. logging out).
    to_login_ok: bool = False


def csrf_for(token: str) -> str:
    """The dashboard's CSRF token for a session cookie."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def _finding_id(w: World) -> int:
    with w.context.sessions() as s:
        return crud.get_study(s, study_id=w.study1).findings[0].id


def _n(w: World) -> int:
    return next(w.counter)


PAGE_MATRIX: dict[tuple[str, str], PageRule] = {
    # "/" sends everyone somewhere: people to their start page, others to the login page.
    ("GET", "/"): PageRule(EVERYONE, lambda w: PageCall("/"), to_login_ok=True),
    ("GET", "/login"): PageRule(EVERYONE, lambda w: PageCall("/login")),
    ("POST", "/login"): PageRule(
        EVERYONE, lambda w: PageCall("/login", form={"username": "drA", "password": "clinician-a"})
    ),
    ("POST", "/logout"): PageRule(
        EVERYONE, lambda w: PageCall("/logout", form={}), to_login_ok=True
    ),
    ("GET", "/ward"): PageRule(STAFF, lambda w: PageCall("/ward")),
    ("GET", "/me"): PageRule(PEOPLE, lambda w: PageCall("/me")),
    ("GET", "/patients/{patient_id}"): PageRule(
        READERS_OF_P1, lambda w: PageCall(f"/patients/{w.p1}")
    ),
    ("GET", "/studies/{study_id}"): PageRule(
        READERS_OF_P1, lambda w: PageCall(f"/studies/{w.study1}")
    ),
    ("GET", "/studies/{study_id}/image"): PageRule(
        READERS_OF_P1, lambda w: PageCall(f"/studies/{w.study1}/image")
    ),
    ("GET", "/studies/{study_id}/findings/{finding_id}/heatmap.png"): PageRule(
        READERS_OF_P1,
        lambda w: PageCall(f"/studies/{w.study1}/findings/{_finding_id(w)}/heatmap.png"),
    ),
    ("GET", "/alerts"): PageRule(STAFF, lambda w: PageCall("/alerts")),
    ("GET", "/alerts/stream"): PageRule(STAFF, lambda w: PageCall("/alerts/stream"), stream=True),
    ("POST", "/alerts/{alert_id}/ack"): PageRule(
        frozenset({"admin", "clin_assigned"}),
        lambda w: PageCall(f"/alerts/{w.alert1}/ack", form={}),
    ),
    ("GET", "/admin"): PageRule(frozenset({"admin"}), lambda w: PageCall("/admin")),
    ("POST", "/admin/patients"): PageRule(
        frozenset({"admin"}),
        lambda w: PageCall("/admin/patients", form={"name": "P", "mrn": f"PG{_n(w)}"}),
    ),
    ("POST", "/admin/devices"): PageRule(
        frozenset({"admin"}),
        lambda w: PageCall(
            "/admin/devices",
            form={"device_id": f"pg-{_n(w)}", "kind": "wearable", "patient_id": str(w.p1)},
        ),
    ),
    ("POST", "/admin/assignments"): PageRule(
        frozenset({"admin"}),
        lambda w: PageCall(
            "/admin/assignments",
            form={"clinician_id": str(w.ids["clin_spare"]), "patient_id": str(w.p2)},
        ),
    ),
    ("POST", "/admin/users"): PageRule(
        frozenset({"admin"}),
        lambda w: PageCall(
            "/admin/users",
            form={"username": f"pguser{_n(w)}", "password": "password-9", "role": "clinician"},
        ),
    ),
    # Static files of the dashboard (CSS, JS) are public; the mount is not a page.
    ("MOUNT", "/static/pages"): PageRule(EVERYONE, lambda w: PageCall("/static/pages/app.css")),
}


def page_request(w: World, method: str, rule: PageRule, caller: str) -> dict[str, Any]:
    """Keyword arguments for ``client.request`` of one page call as ``caller``."""
    call = rule.call(w)
    w.client.cookies.clear()
    header = w.headers[caller].get("Authorization", "")
    headers = dict(call.headers)
    form = dict(call.form) if call.form is not None else None
    if header.startswith("Bearer "):
        token = header.removeprefix("Bearer ")
        w.client.cookies.set("iomt_session", token)
        if form is not None:
            form["csrf"] = csrf_for(token)
    elif header:
        headers["Authorization"] = header  # devices: Basic, which pages do not accept
    return {
        "method": "GET" if method == "MOUNT" else method,
        "url": call.url,
        "headers": headers,
        "data": form,
        "follow_redirects": False,
    }
