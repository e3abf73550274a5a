"""An active dashboard session is renewed in place; an idle or too-old one is not."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from fastapi.testclient import TestClient

from iomt.api.app import create_app
from iomt.api.context import AppContext, app_context
from iomt.api.pages.session import COOKIE_NAME
from iomt.api.security import ALGORITHM, ISSUER, load_or_create_secret
from iomt.config import Settings
from iomt.store import crud


@dataclass
class Served:
    client: TestClient
    context: AppContext
    user_id: int


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    settings = Settings(data_dir=tmp_path, access_token_minutes=15, session_max_hours=8)
    app = create_app(settings)
    context = app_context(app)
    with context.sessions() as s:
        user = crud.create_user(s, username="drA", password="clinician-a", role="clinician")
        s.commit()
        user_id = user.id
    with TestClient(app) as client:
        yield Served(client, context, user_id)
    context.engine.dispose()


def _session_token(served: Served, *, expires_in: timedelta, signed_in_ago: timedelta) -> str:
    """A session token as the login form issues it, but with chosen expiry and sign-in time."""
    now = datetime.now(UTC)
    payload = {
        "sub": f"user:{served.user_id}",
        "role": "clinician",
        "iss": ISSUER,
        "iat": now,
        "exp": now + expires_in,
        "jti": "t",
        "sid": "session-1",
        "auth_time": int((now - signed_in_ago).timestamp()),
    }
    return jwt.encode(payload, load_or_create_secret(served.context.settings), ALGORITHM)


def _get(served: Served, token: str, path: str = "/ward") -> tuple[int, str | None]:
    response = served.client.get(
        path, headers={"Cookie": f"{COOKIE_NAME}={token}"}, follow_redirects=False
    )
    return response.status_code, response.cookies.get(COOKIE_NAME)


def _csrf(served: Served, token: str) -> str:
    """The CSRF token in the forms of a page rendered for ``token``."""
    page = served.client.get("/ward", headers={"Cookie": f"{COOKIE_NAME}={token}"})
    return page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def test_a_session_past_half_its_life_gets_a_fresh_token_for_the_same_session(
    served: Served,
) -> None:
    old = _session_token(served, expires_in=timedelta(minutes=2), signed_in_ago=timedelta(hours=1))
    status, renewed = _get(served, old)
    assert status == 200 and renewed is not None and renewed != old
    claims = served.context.tokens.verify(renewed)
    assert claims.session_id == "session-1" and claims.subject == str(served.user_id)
    left = claims.expires - datetime.now(UTC)
    assert timedelta(minutes=14) < left <= timedelta(minutes=15)
    # the renewed cookie signs in, and forms opened before the renewal still carry a valid CSRF
    assert _get(served, renewed)[0] == 200
    assert _csrf(served, old) == _csrf(served, renewed) != ""


def test_fresh_expired_and_too_old_sessions_are_not_renewed(served: Served) -> None:
    fresh = _session_token(served, expires_in=timedelta(minutes=14), signed_in_ago=timedelta(0))
    assert _get(served, fresh) == (200, None)
    expired = _session_token(served, expires_in=-timedelta(minutes=1), signed_in_ago=timedelta(0))
    assert _get(served, expired) == (401, None)  # the sign-in page, no new cookie
    too_old = _session_token(
        served, expires_in=timedelta(minutes=2), signed_in_ago=timedelta(hours=8, minutes=1)
    )
    assert _get(served, too_old) == (200, None)  # still valid, but the session is at its end


def test_the_session_cap_bounds_a_renewed_token(served: Served) -> None:
    near_cap = _session_token(
        served, expires_in=timedelta(minutes=2), signed_in_ago=timedelta(hours=7, minutes=55)
    )
    _, renewed = _get(served, near_cap)
    assert renewed is not None
    left = served.context.tokens.verify(renewed).expires - datetime.now(UTC)
    assert left <= timedelta(minutes=5)


def test_sign_out_is_not_undone_by_a_renewal(served: Served) -> None:
    old = _session_token(served, expires_in=timedelta(minutes=2), signed_in_ago=timedelta(hours=1))
    csrf = _csrf(served, old)
    served.client.cookies.clear()
    response = served.client.post(
        "/logout",
        data={"csrf": csrf},
        headers={"Cookie": f"{COOKIE_NAME}={old}"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    cookies = response.headers.get_list("set-cookie")
    assert len(cookies) == 1 and 'iomt_session=""' in cookies[0]
