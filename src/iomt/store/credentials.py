"""Password and device-secret hashing (argon2id), and device authentication.

Device secrets are random and verified on every HTTP request or MQTT connect; argon2 is slow
on purpose, so a successful verification is remembered in memory (keyed by the device, the
stored hash and a SHA-256 of the secret) and later checks of the same secret cost one hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict

from argon2 import Parameters, PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from iomt.store.models import Device

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile (t=3, m=64 MiB, p=4)

#: How many verified device secrets are remembered.
DEVICE_CACHE_SIZE = 10_000


def set_hash_parameters(parameters: Parameters) -> None:
    """Use other argon2 parameters for new hashes (tests use ``argon2.profiles.CHEAPEST``).

    Existing hashes carry their own parameters and keep verifying.
    """
    global _hasher
    _hasher = PasswordHasher.from_parameters(parameters)


def hash_secret(secret: str) -> str:
    """Return the argon2id hash of a password or device secret."""
    return _hasher.hash(secret)


def verify_secret(stored_hash: str, secret: str) -> bool:
    """Return whether ``secret`` matches ``stored_hash`` (never raises for a wrong secret)."""
    try:
        return _hasher.verify(stored_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


def new_device_secret() -> str:
    """A fresh random device secret (256 bits, URL-safe), shown to the admin once."""
    return secrets.token_urlsafe(32)


class _VerifiedCache:
    """LRU of (device_id, stored hash) -> SHA-256 of the secret that verified against it."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, device_id: str, stored_hash: str, digest: bytes) -> bool:
        with self._lock:
            known = self._items.get((device_id, stored_hash))
            if known is None:
                return False
            self._items.move_to_end((device_id, stored_hash))
        return hmac.compare_digest(known, digest)

    def remember(self, device_id: str, stored_hash: str, digest: bytes) -> None:
        with self._lock:
            self._items[(device_id, stored_hash)] = digest
            self._items.move_to_end((device_id, stored_hash))
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_verified = _VerifiedCache(DEVICE_CACHE_SIZE)


def verify_device_secret(session: Session, device_id: str, secret: str) -> Device | None:
    """Return the active device if ``secret`` is its secret, else None.

    Used by the HTTP API (Basic auth, device tokens) and by the MQTT broker's authentication.
    A rotated secret changes the stored hash, so a remembered verification of the old secret no
    longer matches.
    """
    device = session.scalars(select(Device).where(Device.device_id == device_id)).one_or_none()
    if device is None or not device.active:
        return None
    digest = hashlib.sha256(secret.encode()).digest()
    if _verified.check(device_id, device.secret_hash, digest):
        return device
    if not verify_secret(device.secret_hash, secret):
        return None
    _verified.remember(device_id, device.secret_hash, digest)
    return device


def forget_verified_secrets() -> None:
    """Drop every remembered device verification (e.g. after bulk secret rotation)."""
    _verified.clear()
