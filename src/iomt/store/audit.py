"""The audit log and the dead-letter table."""

from __future__ import annotations

from collections.abc import Iterable

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


def add_dead_letter(
    session: Session,
    *,
    source: str,
    payload: bytes,
    reason: str,
    device_id: str | None = None,
    topic: str | None = None,
) -> DeadLetter:
    """Keep a message that could not be accepted, with the reason (the caller commits)."""
    if source not in DEAD_LETTER_SOURCE_VALUES:
        raise ValidationError(
            f"dead-letter source {source!r} is not one of {list(DEAD_LETTER_SOURCE_VALUES)}"
        )
    if len(payload) > MAX_DEAD_LETTER_BYTES:
        reason = f"{reason} (payload of {len(payload)} bytes cut to {MAX_DEAD_LETTER_BYTES})"
        payload = payload[:MAX_DEAD_LETTER_BYTES]
    row = DeadLetter(
        source=source,
        device_id=device_id,
        topic=topic,
        payload=payload,
        reason=reason,
        received_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


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
