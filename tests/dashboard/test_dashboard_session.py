"""Unit tests of the dashboard's session helpers: redirects, CSRF tokens, role start pages."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from iomt.api.pages.session import (
    COOKIE_NAME,
    PageUser,
    csrf_ok,
    csrf_token,
    home_for,
    safe_next,
)


def _request(cookie: str | None = None, origin: str | None = None) -> Request:
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


def test_csrf_token_is_bound_to_the_session_cookie() -> None:
    request = _request(cookie="a.b.c")
    token = csrf_token(request)
    assert len(token) == 32
    assert csrf_ok(request, token)
    assert not csrf_ok(request, "0" * 32)
    assert not csrf_ok(_request(cookie="x.y.z"), token)  # another session
    assert csrf_token(_request()) == ""
    assert not csrf_ok(_request(), "")  # no session, no token


def test_csrf_refuses_a_foreign_origin() -> None:
    token = csrf_token(_request(cookie="a.b.c"))
    assert csrf_ok(_request(cookie="a.b.c", origin="http://127.0.0.1:8000"), token)
    assert not csrf_ok(_request(cookie="a.b.c", origin="https://evil.example"), token)


def test_each_role_has_its_start_page() -> None:
    def user(role: str) -> PageUser:
        return PageUser(id=1, username="u", role=role, patient_id=None, full_name=None)

    assert home_for(user("admin")) == "/admin"
    assert home_for(user("clinician")) == "/ward"
    assert home_for(user("patient")) == "/me"
    assert user("clinician").principal.user_id == 1
