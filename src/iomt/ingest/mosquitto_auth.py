"""Password and ACL files that make Mosquitto enforce iomt's device rules.

With an external broker, Mosquitto authenticates devices and enforces that each may publish
only to its own topic. iomt stores device secrets only as argon2 hashes, so the password file
is written when secrets are issued (registration, rotation, ``iomt simulate``), from the
plain secrets at hand::

    write_password_file(path, {"wearable-1": secret, ...})   # Mosquitto $7$ PBKDF2-SHA512
    write_acl_file(path, gateway_user="iomt-gateway")

and in ``mosquitto.conf``::

    allow_anonymous false
    password_file /etc/mosquitto/iomt.passwd
    acl_file /etc/mosquitto/iomt.acl

The ACL gives every device (``%u`` = its user name = its device id) write access to
``iomt/devices/<id>/#`` only, and the gateway user read access to all readings topics.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

#: PBKDF2 iterations of ``mosquitto_passwd`` (format ``$7$``) by default.
ITERATIONS = 101


def mosquitto_hash(
    password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS
) -> str:
    """Hash ``password`` the way ``mosquitto_passwd`` does (``$7$``, PBKDF2-HMAC-SHA512)."""
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def write_password_file(path: Path, credentials: Mapping[str, str]) -> None:
    """Write a Mosquitto password file for ``{user: password}`` (mode 0600)."""
    lines = []
    for user, password in sorted(credentials.items()):
        if ":" in user or not user:
            raise ValueError(f"user name {user!r} cannot be used in a password file")
        lines.append(f"{user}:{mosquitto_hash(password)}\n")
    path.write_text("".join(lines))
    path.chmod(0o600)


def acl_text(*, gateway_user: str | None = "iomt-gateway") -> str:
    """The ACL: devices write their own subtree; the gateway reads every readings topic."""
    parts = ["# iomt: each device may publish only under its own topic", ""]
    if gateway_user:
        parts += [f"user {gateway_user}", "topic read iomt/devices/+/readings", ""]
    parts += ["pattern write iomt/devices/%u/#", "pattern read iomt/devices/%u/#", ""]
    return "\n".join(parts)


def write_acl_file(path: Path, *, gateway_user: str | None = "iomt-gateway") -> None:
    """Write the ACL file (see :func:`acl_text`)."""
    path.write_text(acl_text(gateway_user=gateway_user))
