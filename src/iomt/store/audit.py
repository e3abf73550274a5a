"""The audit log and the dead-letter table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from iomt.errors import ValidationError
from iomt.store.models import DEAD_LETTER_SOURCE_VALUES, AuditEntry, DeadLetter
from iomt.store.types import utcnow

#: Longest payload kept in a dead letter; longer ones are cut (the reason says so).
MAX_DEAD_LETTER_BYTES = 64 * 1024


def record_audit(
    session: Session,
    *,
    action: str,
    resource: str,
    patient_ids: Iterable[int | None] = (None,),
    actor_user_id: int | None = None,
    actor_device_id: str | None = None,
    ip: str | None = None,
) -> int:
    """Write one audit row per patient touched (the caller commits). Returns the row count."""
    now = utcnow()
    rows = [
        {
            "time": now,
            "actor_user_id": actor_user_id,
            "actor_device_id": actor_device_id,
            "action": action,
            "patient_id": pid,
            "resource": resource[:255],
            "ip": ip,
        }
        for pid in patient_ids
    ]
    if rows:
        session.execute(insert(AuditEntry), rows)
    return len(rows)


def list_audit(
    session: Session,
    *,
    patient_id: int | None = None,
    actor_user_id: int | None = None,
    limit: int = 500,
) -> list[AuditEntry]:
    """Audit rows, newest first, optionally for one patient or one actor."""
    query = select(AuditEntry)
    if patient_id is not None:
        query = query.where(AuditEntry.patient_id == patient_id)
    if actor_user_id is not None:
        query = query.where(AuditEntry.actor_user_id == actor_user_id)
    return list(session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit)))


@dataclass(frozen=True, slots=True)
class DeadLetterIn:
    """A message (or one reading of it) that could not be accepted, with the reason."""

    source: str
    device_id: str | None
    topic: str | None
    payload: bytes
    reason: str


def add_dead_letters(
    session: Session, *, letters: Sequence[DeadLetterIn], received_at: datetime | None = None
) -> int:
    """Keep messages that could not be accepted, with reasons, in one executemany.

    A payload longer than :data:`MAX_DEAD_LETTER_BYTES` is cut (the reason says so). The
    caller commits. Used by the ingest writer (many letters per group commit) and, through
    :func:`add_dead_letter`, by the HTTP routes.

    Returns
    -------
    int
        How many dead letters were written.

    Raises
    ------
    ValidationError
        If a letter's source is not one of ``DEAD_LETTER_SOURCE_VALUES``.
    """
    if not letters:
        return 0
    now = received_at or utcnow()
    rows = []
    for letter in letters:
        if letter.source not in DEAD_LETTER_SOURCE_VALUES:
            raise ValidationError(
                f"dead-letter source {letter.source!r} is not one of "
                f"{list(DEAD_LETTER_SOURCE_VALUES)}"
            )
        payload, reason = letter.payload, letter.reason
        if len(payload) > MAX_DEAD_LETTER_BYTES:
            reason = f"{reason} (payload of {len(payload)} bytes cut to {MAX_DEAD_LETTER_BYTES})"
            payload = payload[:MAX_DEAD_LETTER_BYTES]
        rows.append(
            {
                "source": letter.source,
                "device_id": letter.device_id,
                "topic": letter.topic,
                "payload": payload,
                "reason": reason,
                "received_at": now,
            }
        )
    session.execute(insert(DeadLetter), rows)
    return len(rows)


def add_dead_letter(
    session: Session,
    *,
    source: str,
    payload: bytes,
    reason: str,
    device_id: str | None = None,
    topic: str | None = None,
) -> None:
    """Keep one message that could not be accepted (see :func:`add_dead_letters`)."""
    add_dead_letters(session, letters=[DeadLetterIn(source, device_id, topic, payload, reason)])


def list_dead_letters(
    session: Session, *, source: str | None = None, device_id: str | None = None, limit: int = 200
) -> list[DeadLetter]:
    """Dead letters, newest first."""
    query = select(DeadLetter)
    if source is not None:
        query = query.where(DeadLetter.source == source)
    if device_id is not None:
        query = query.where(DeadLetter.device_id == device_id)
    return list(session.scalars(query.order_by(DeadLetter.id.desc()).limit(limit)))


def count_dead_letters(session: Session, *, source: str | None = None) -> int:
    """How many dead letters are kept (of one source, or all)."""
    query = select(func.count()).select_from(DeadLetter)
    if source is not None:
        query = query.where(DeadLetter.source == source)
    return int(session.scalar(query) or 0)
