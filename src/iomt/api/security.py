"""Signing keys and short-lived JWTs (PyJWT, HS256) for users and devices.

A token's ``sub`` is ``"user:<id>"`` or ``"device:<device_id>"``; ``role`` is the role at issue
time (``admin``, ``clinician``, ``patient`` or ``device``). Every request re-reads the user or
device, so deactivation and role changes take effect before the token expires.

Dashboard sign-ins get session tokens: they also carry a session id (``sid``) and the time of
the password check (``auth_time``), so the dashboard can renew an active session's token (same
``sid``, later ``exp``) up to an absolute limit without asking for the password again.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt

from iomt.config import Settings
from iomt.errors import AuthError

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
ISSUER = "iomt"
SECRET_FILE = "secret.key"


def load_or_create_secret(settings: Settings) -> str:
    """The JWT signing key: ``settings.secret_key``, else ``data_dir/secret.key``.

    The file is created once with 256 random bits and mode 0600; later starts reuse it, so
    tokens survive a restart.
    """
    if settings.secret_key is not None:
        key = settings.secret_key.get_secret_value()
        if len(key) < 32:
            raise AuthError("IOMT_SECRET_KEY must have at least 32 characters")
        return key
    path = Path(settings.data_dir) / SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    log.info("created JWT signing key %s (mode 0600)", path)
    return key


@dataclass(frozen=True, slots=True)
class Claims:
    """The verified content of an access token."""

    subject_kind: str  # "user" | "device"
    subject: str  # user id (as text) or device_id
    role: str
    expires: datetime
    session_id: str | None = None  # dashboard sessions only
    auth_time: datetime | None = None  # when the password was checked (sessions only)


class TokenService:
    """Issues and verifies access tokens with one key."""

    def __init__(self, key: str, *, minutes: int) -> None:
        self._key = key
        self.lifetime = timedelta(minutes=minutes)

    def issue(
        self,
        *,
        subject_kind: str,
        subject: str,
        role: str,
        session_id: str | None = None,
        auth_time: datetime | None = None,
        not_after: datetime | None = None,
    ) -> tuple[str, int]:
        """Return a signed token and its lifetime in seconds.

        ``session_id`` and ``auth_time`` make it a session token; ``not_after`` caps its expiry.
        """
        now = datetime.now(UTC)
        expires = now + self.lifetime
        if not_after is not None:
            expires = min(expires, not_after)
        payload: dict[str, Any] = {
            "sub": f"{subject_kind}:{subject}",
            "role": role,
            "iss": ISSUER,
            "iat": now,
            "exp": expires,
            "jti": secrets.token_hex(8),
        }
        if session_id is not None:
            payload["sid"] = session_id
            payload["auth_time"] = int((auth_time or now).timestamp())
        token = jwt.encode(payload, self._key, algorithm=ALGORITHM)
        return token, max(0, int((expires - now).total_seconds()))

    def issue_session(self, *, user_id: int, role: str) -> tuple[str, int]:
        """A session token for a user who has just given the password (new ``sid``)."""
        return self.issue(
            subject_kind="user", subject=str(user_id), role=role, session_id=secrets.token_hex(16)
        )

    def renew_session(self, claims: Claims, *, max_session: timedelta) -> tuple[str, int] | None:
        """A fresh token for the same session, or None past ``auth_time + max_session``."""
        if claims.subject_kind != "user" or claims.session_id is None or claims.auth_time is None:
            return None
        not_after = claims.auth_time + max_session
        if datetime.now(UTC) >= not_after:
            return None
        return self.issue(
            subject_kind="user",
            subject=claims.subject,
            role=claims.role,
            session_id=claims.session_id,
            auth_time=claims.auth_time,
            not_after=not_after,
        )

    def issue_for_user(self, *, user_id: int, role: str) -> tuple[str, int]:
        """Token for a user (admin, clinician or patient)."""
        return self.issue(subject_kind="user", subject=str(user_id), role=role)

    def issue_for_device(self, *, device_id: str) -> tuple[str, int]:
        """Token for a device (role ``device``)."""
        return self.issue(subject_kind="device", subject=device_id, role="device")

    def verify(self, token: str) -> Claims:
        """Check signature, issuer and expiry.

        Raises
        ------
        AuthError
            With the reason (expired, bad signature, malformed).
        """
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "sub", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("the access token has expired; log in again") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid access token: {exc}") from None
        kind, _, subject = str(payload["sub"]).partition(":")
        if kind not in ("user", "device") or not subject:
            raise AuthError("invalid access token: unknown subject")
        auth_time = payload.get("auth_time")
        return Claims(
            subject_kind=kind,
            subject=subject,
            role=str(payload.get("role", "")),
            expires=datetime.fromtimestamp(payload["exp"], UTC),
            session_id=str(payload["sid"]) if payload.get("sid") else None,
            auth_time=datetime.fromtimestamp(auth_time, UTC)
            if isinstance(auth_time, int | float)
            else None,
        )

    def user_id(self, token: str) -> int:
        """The user id a valid user token names (raises AuthError otherwise)."""
        claims = self.verify(token)
        if claims.subject_kind != "user":
            raise AuthError("this is not a user token")
        return int(claims.subject)
