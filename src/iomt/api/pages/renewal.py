"""Keep an active dashboard session signed in: renew its cookie while it is used.

Session tokens live ``access_token_minutes`` (15 by default). A ward screen that refreshes
every 30 s, or a clinician working through the day, should not be sent back to the login form
every quarter of an hour, so a successful (2xx) response to a request whose session token has
used up half its lifetime carries a fresh token for the same session (same ``sid``, so the
page's CSRF token stays valid). Renewal stops ``session_max_hours`` after the password was
given; then the token runs out and the user signs in again. A response that already sets the
session cookie (sign-in, sign-out) is left alone.

This is a pure ASGI middleware, so streamed responses (the live alert feed) pass through
untouched apart from the extra header.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie

from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from iomt.api.context import app_context
from iomt.api.pages.session import COOKIE_NAME, write_session_cookie
from iomt.errors import AuthError

log = logging.getLogger(__name__)


def _cookie(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            jar.load(value.decode("latin-1"))
            if COOKIE_NAME in jar:
                return jar[COOKIE_NAME].value or None
    return None


class SessionRenewal:
    """ASGI middleware adding a renewed session cookie to successful responses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add ``Set-Cookie`` to the response start when due."""
        token = _cookie(scope) if scope["type"] == "http" else None
        if token is None:
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                headers = MutableHeaders(scope=message)
                sets_cookie = any(
                    value.startswith(f"{COOKIE_NAME}=") for value in headers.getlist("set-cookie")
                )
                renewed = None if sets_cookie else self._renewed(scope, token)
                if renewed is not None:
                    headers.append("set-cookie", renewed)
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _renewed(self, scope: Scope, token: str) -> str | None:
        """The ``Set-Cookie`` value of a renewed session token, or None if none is due."""
        context = app_context(scope["app"])
        tokens = context.tokens
        try:
            claims = tokens.verify(token)
        except AuthError:
            return None
        if claims.session_id is None:
            return None
        if claims.expires - datetime.now(UTC) > tokens.lifetime / 2:
            return None
        max_session = timedelta(hours=context.settings.session_max_hours)
        issued = tokens.renew_session(claims, max_session=max_session)
        if issued is None:
            return None
        carrier = Response()
        write_session_cookie(carrier, *issued, secure=scope.get("scheme") == "https")
        log.debug("renewed dashboard session %s", claims.session_id[:8])
        return carrier.headers["set-cookie"]
