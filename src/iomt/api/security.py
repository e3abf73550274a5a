"""Signing keys and short-lived JWTs (PyJWT, HS256) for users and devices.

A token's ``sub`` is ``"user:<id>"`` or ``"device:<device_id>"``; ``role`` is the role at issue
time (``admin``, ``clinician``, ``patient`` or ``device``). Every request re-reads the user or
device, so deactivation and role changes take effect before the token expires.
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


class TokenService:
    """Issues and verifies access tokens with one key."""

    def __init__(self, key: str, *, minutes: int) -> None:
        self._key = key
        self.lifetime = timedelta(minutes=minutes)

    def issue(self, *, subject_kind: str, subject: str, role: str) -> tuple[str, int]:
        """Return a signed token and its lifetime in seconds."""
        now = datetime.now(UTC)
        payload: dict[str, Any] = {
            "sub": f"{subject_kind}:{subject}",
            "role": role,
            "iss": ISSUER,
            "iat": now,
            "exp": now + self.lifetime,
            "jti": secrets.token_hex(8),
        }
        token = jwt.encode(payload, self._key, algorithm=ALGORITHM)
        return token, int(self.lifetime.total_seconds())

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
        return Claims(
            subject_kind=kind,
            subject=subject,
            role=str(payload.get("role", "")),
            expires=datetime.fromtimestamp(payload["exp"], UTC),
        )

    def user_id(self, token: str) -> int:
        """The user id a valid user token names (raises AuthError otherwise)."""
        claims = self.verify(token)
        if claims.subject_kind != "user":
            raise AuthError("this is not a user token")
        return int(claims.subject)
