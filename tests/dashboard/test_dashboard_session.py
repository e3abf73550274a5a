"""Unit tests of the dashboard's session helpers: redirects, CSRF tokens, role start pages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.requests import Request

from iomt.api.app import create_app
from iomt.api.context import app_context
from iomt.api.pages.session import (
    COOKIE_NAME,
    PageUser,
    csrf_ok,
    csrf_token,
    home_for,
    safe_next,
)
from iomt.config import Settings


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    """An app whose token service signs the session cookies of these requests."""
    application = create_app(Settings(data_dir=tmp_path))
    yield application
    app_context(application).engine.dispose()


def _session(app: FastAPI) -> str:
    return app_context(app).tokens.issue_session(user_id=1, role="clinician")[0]


def _request(app: FastAPI, cookie: str | None = None, origin: str | None = None) -> Request:
    headers = [(b"host", b"127.0.0.1:8000")]
    if cookie is not None:
        headers.append((b"cookie", f"{COOKIE_NAME}={cookie}".encode()))
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    scope = {
        "type": "http",
        "method": "POST",
        "scheme": "http",
        "path": "/alerts/1/ack",
        "query_string": b"",
        "headers": headers,
        "server": ("127.0.0.1", 8000),
        "app": app,
    }
    return Request(scope)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/patients/3?hours=6", "/patients/3?hours=6"),
        ("https://evil.example/", ""),
        ("//evil.example/", ""),
        ("/\\evil.example", ""),
        ("", ""),
    ],
)
def test_safe_next_only_allows_local_paths(target: str, expected: str) -> None:
    assert safe_next(target) == expected


def test_csrf_token_is_bound_to_the_session_cookie(app: FastAPI) -> None:
    cookie = _session(app)
    request = _request(app, cookie=cookie)
    token = csrf_token(request)
    assert len(token) == 32
    assert csrf_ok(request, token)
    assert not csrf_ok(request, "0" * 32)
    assert not csrf_ok(_request(app, cookie=_session(app)), token)  # another session, same user
    assert csrf_token(_request(app, cookie="a.b.c")) == ""  # not a valid token: no session
    assert csrf_token(_request(app)) == ""
    assert not csrf_ok(_request(app), "")  # no session, no token


def test_csrf_token_survives_a_renewal_of_the_session_token(app: FastAPI) -> None:
    from datetime import timedelta

    tokens = app_context(app).tokens
    cookie = _session(app)
    renewed = tokens.renew_session(tokens.verify(cookie), max_session=timedelta(hours=1))
    assert renewed is not None and renewed[0] != cookie
    assert csrf_token(_request(app, cookie=renewed[0])) == csrf_token(_request(app, cookie=cookie))


def test_csrf_refuses_a_foreign_origin(app: FastAPI) -> None:
    cookie = _session(app)
    token = csrf_token(_request(app, cookie=cookie))
    assert csrf_ok(_request(app, cookie=cookie, origin="http://127.0.0.1:8000"), token)
    assert not csrf_ok(_request(app, cookie=cookie, origin="https://evil.example"), token)


def test_each_role_has_its_start_page() -> None:
    def user(role: str) -> PageUser:
        return PageUser(id=1, username="u", role=role, patient_id=None, full_name=None)

    assert home_for(user("admin")) == "/admin"
    assert home_for(user("clinician")) == "/ward"
    assert home_for(user("patient")) == "/me"
    assert user("clinician").principal.user_id == 1
