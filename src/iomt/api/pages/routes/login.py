"""Signing in and out: the login form sets the session cookie (the API's JWT)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import (
    HTMLResponse,
    RedirectResponse,
    Response,
)

from iomt.api.context import context_of
from iomt.api.pages import session as web
from iomt.api.pages.rendering import (
    DbDep,
    render,
)
from iomt.api.throttle import retry_after_header

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)


@router.get("/", response_model=None)
def home(request: Request) -> Response:
    """Send each role to its start page (or to the login form)."""
    user = web.optional_user(request)
    if user is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(web.home_for(user), status_code=303)


def _login_page(
    request: Request,
    *,
    next_url: str,
    username: str = "",
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    """The sign-in form, optionally with an error and the user name typed before."""
    return render(
        request,
        "login.html",
        None,
        None,
        status_code=status,
        error=error,
        username=username,
        next_url=web.safe_next(next_url),
    )


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "") -> HTMLResponse:
    """The sign-in form."""
    return _login_page(request, next_url=next)


@router.post("/login", response_model=None)
def login_submit(
    request: Request,
    db: DbDep,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    """Check the password; on success set the session cookie and go to the start page.

    Shares the API's sign-in limits: while the user name or address is locked the form says
    so (429, ``Retry-After``) without checking the password.
    """
    guard = context_of(request).sign_in
    address = request.client.host if request.client else None
    wait = guard.retry_after(username, address)
    if wait is not None:
        locked = _login_page(
            request,
            next_url=next,
            username=username,
            error="Too many failed sign-ins. Please wait a few minutes and try again.",
            status=429,
        )
        locked.headers.update(retry_after_header(wait))
        return locked
    user = web.login(db, username=username, password=password)
    if user is None:
        log.info("dashboard login failed for %r", username[:64])
        guard.failed(username, address)
        return _login_page(
            request,
            next_url=next,
            username=username,
            error="Wrong user name or password.",
            status=401,
        )
    guard.succeeded(username)
    target = web.safe_next(next) or web.home_for(user)
    response = RedirectResponse(target, status_code=303)
    web.set_session_cookie(request, response, user)
    return response


@router.post("/logout", response_model=None)
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    """Forget the session cookie."""
    response = RedirectResponse("/login", status_code=303)
    if web.csrf_ok(request, csrf):
        web.clear_session_cookie(response)
    return response
