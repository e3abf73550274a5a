"""``/api/dead-letters`` and ``/api/audit``: operations views for admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from iomt.api.deps import AdminDep, SessionDep
from iomt.api.schemas import AuditOut, DeadLetterOut
from iomt.store import crud

router = APIRouter(prefix="/api", tags=["admin"])


@router.get("/dead-letters")
def dead_letters(
    _: AdminDep,
    session: SessionDep,
    source: str | None = None,
    device_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[DeadLetterOut]:
    """Refused messages with their reasons, newest first."""
    rows = crud.list_dead_letters(session, source=source, device_id=device_id, limit=limit)
    return [
        DeadLetterOut(
            id=r.id,
            source=r.source,
            device_id=r.device_id,
            topic=r.topic,
            payload=r.payload.decode("utf-8", errors="replace"),
            reason=r.reason,
            received_at=r.received_at,
        )
        for r in rows
    ]


@router.get("/audit")
def audit_log(
    _: AdminDep,
    session: SessionDep,
    patient_id: int | None = None,
    user_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[AuditOut]:
    """Who read or changed which patient's data, newest first."""
    rows = crud.list_audit(session, patient_id=patient_id, actor_user_id=user_id, limit=limit)
    return [AuditOut.model_validate(r) for r in rows]
