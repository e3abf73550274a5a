"""Identity and access: password login, token checks, per-role visibility, audit, alerts."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import jwt
from api_helpers import World

from iomt.api.security import SECRET_FILE, TokenService, load_or_create_secret
from iomt.config import Settings
from iomt.store import crud


def test_password_login_issues_a_short_lived_jwt(world: World) -> None:
    response = world.client.post(
        "/api/auth/token", data={"username": "drA", "password": "clinician-a"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == world.context.settings.access_token_minutes * 60
    me = world.client.get(
        "/api/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.json()["role"] == "clinician" and me.json()["name"] == "drA"
    wrong = world.client.post("/api/auth/token", data={"username": "drA", "password": "nope"})
    assert wrong.status_code == 401 and "incorrect" in wrong.json()["detail"]


def test_expired_forged_and_deactivated_tokens_are_refused(world: World) -> None:
    expired = TokenService(load_or_create_secret(world.context.settings), minutes=-1)
    token, _ = expired.issue_for_user(user_id=world.ids["admin"], role="admin")
    response = world.client.get("/api/users", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and "expired" in response.json()["detail"]
    forged = jwt.encode(
        {"sub": f"user:{world.ids['admin']}", "role": "admin", "iss": "iomt", "exp": 2**40},
        "not-the-key-not-the-key-not-the-key",
        algorithm="HS256",
    )
    response = world.client.get("/api/users", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401 and "signature" in response.json()["detail"].lower()
    with world.context.sessions() as s:
        crud.get_user(s, user_id=world.ids["clin_assigned"]).active = False
        s.commit()
    response = world.client.get("/api/patients", headers=world.headers["clin_assigned"])
    assert response.status_code == 401 and "deactivated" in response.json()["detail"]


def test_signing_key_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    key = load_or_create_secret(settings)
    assert load_or_create_secret(settings) == key
    assert ((tmp_path / SECRET_FILE).stat().st_mode & 0o777) == 0o600


def test_each_role_sees_only_its_patients(world: World) -> None:
    def names(caller: str) -> list[str]:
        response = world.client.get("/api/patients", headers=world.headers[caller])
        return [p["mrn"] for p in response.json()]

    assert names("admin") == ["MRN-A", "MRN-B"]
    assert names("clin_assigned") == ["MRN-A"]
    assert names("clin_unassigned") == ["MRN-B"]
    assert names("patient_self") == ["MRN-A"]
    forbidden = world.client.get(
        f"/api/patients/{world.p1}/readings", headers=world.headers["clin_unassigned"]
    )
    assert forbidden.status_code == 403
    assert "not assigned to patient" in forbidden.json()["detail"]


def test_reads_write_audit_rows_naming_who_what_and_whom(world: World) -> None:
    world.client.get(f"/api/patients/{world.p1}/verdicts", headers=world.headers["clin_assigned"])
    world.client.get("/api/patients", headers=world.headers["admin"])
    world.client.get(f"/api/patients/{world.p1}", headers=world.headers["patient_other"])  # 403
    with world.context.sessions() as s:
        rows = crud.list_audit(s)
    verdict_read = [r for r in rows if r.resource.endswith("/verdicts")]
    assert len(verdict_read) == 1
    assert verdict_read[0].actor_user_id == world.ids["clin_assigned"]
    assert verdict_read[0].patient_id == world.p1 and verdict_read[0].action == "read"
    listing = [r for r in rows if r.resource == "GET /api/patients"]
    assert sorted(r.patient_id for r in listing) == [world.p1, world.p2]
    assert not [r for r in rows if r.actor_user_id == world.ids["patient_other"]]
    audit = world.client.get(f"/api/audit?patient_id={world.p1}", headers=world.headers["admin"])
    assert len(audit.json()) >= 2


def test_alerts_are_filtered_and_acknowledged_once(world: World) -> None:
    mine = world.client.get("/api/alerts", headers=world.headers["clin_assigned"]).json()
    assert {a["patient_id"] for a in mine} == {world.p1}
    ack = world.client.post(
        f"/api/alerts/{world.alert1}/ack", headers=world.headers["clin_assigned"]
    )
    assert ack.status_code == 200 and ack.json()["acknowledged_by"] == world.ids["clin_assigned"]
    again = world.client.post(f"/api/alerts/{world.alert1}/ack", headers=world.headers["admin"])
    assert again.json()["acknowledged_by"] == world.ids["clin_assigned"]  # first ack stays
    open_only = world.client.get(
        "/api/alerts?unacknowledged=true", headers=world.headers["clin_assigned"]
    )
    assert open_only.json() == []
    denied = world.client.post(
        f"/api/alerts/{world.alert1}/ack", headers=world.headers["clin_unassigned"]
    )
    assert denied.status_code == 403


def test_live_feed_streams_only_visible_alerts(world: World) -> None:
    feed = world.context.alert_feed
    portal = world.client.portal  # the event loop the app runs on
    assert portal is not None

    def publish_when_subscribed() -> None:
        deadline = time.monotonic() + 5
        while feed.subscriber_count == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        portal.call(feed.publish, {"id": 900, "patient_id": world.p2, "title": "not yours"})
        portal.call(feed.publish, {"id": 901, "patient_id": world.p1, "title": "yours"})

    publisher = threading.Thread(target=publish_when_subscribed)
    publisher.start()
    events = []
    with world.client.stream(
        "GET", "/api/alerts/stream?max_seconds=1.5", headers=world.headers["clin_assigned"]
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
                break
    publisher.join()
    assert [e["title"] for e in events] == ["yours"]
    with world.context.sessions() as s:
        streamed = [r for r in crud.list_audit(s) if r.resource == "GET /api/alerts/stream"]
    assert [r.patient_id for r in streamed] == [world.p1]
