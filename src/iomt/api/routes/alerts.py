"""``/api/alerts``: list, acknowledge, and the live feed (server-sent events)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from iomt.api.context import context_of
from iomt.api.deps import (
    SessionDep,
    StaffDep,
    UserDep,
    audit_reads,
    check_patient_access,
    visible_patient_ids,
)
from iomt.api.schemas import AlertOut
from iomt.store import crud

router = APIRouter(prefix="/api/alerts", tags=["alerts"])

#: Seconds between keep-alive comments on an idle stream.
KEEPALIVE_S = 15.0


@router.get("")
def list_alerts(
    request: Request,
    principal: UserDep,
    session: SessionDep,
    unacknowledged: bool = False,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AlertOut]:
    """Alerts of the patients the caller may see, newest first."""
    ids = visible_patient_ids(session, principal)
    alerts = crud.list_alerts(
        session, patient_ids=ids, unacknowledged_only=unacknowledged, since=since, limit=limit
    )
    audit_reads(request, session, principal, [a.patient_id for a in alerts])
    return [AlertOut.model_validate(a) for a in alerts]


@router.post("/{alert_id}/ack")
def acknowledge(
    request: Request, alert_id: int, principal: StaffDep, session: SessionDep
) -> AlertOut:
    """Acknowledge an alert (a clinician of the patient, or an admin). Idempotent."""
    alert = crud.get_alert(session, alert_id=alert_id)
    check_patient_access(session, principal, alert.patient_id)
    assert principal.user_id is not None
    crud.acknowledge_alert(session, alert=alert, user_id=principal.user_id)
    session.commit()
    audit_reads(request, session, principal, [alert.patient_id], action="acknowledge")
    return AlertOut.model_validate(alert)


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(
    request: Request,
    principal: UserDep,
    session: SessionDep,
    max_seconds: Annotated[float | None, Query(ge=0, description="Close after this long")] = None,
) -> StreamingResponse:
    """Live alerts of the caller's patients as server-sent events (``event: alert``)."""
    ids = visible_patient_ids(session, principal)
    allowed = None if ids is None else set(ids)
    actor = (principal.user_id, request.client.host if request.client else None)
    feed = context_of(request).alert_feed
    sessions = context_of(request).sessions
    session.close()

    def audit(patient_id: int) -> None:
        with sessions() as s:
            crud.record_audit(
                s,
                action="read",
                resource="GET /api/alerts/stream",
                patient_ids=[patient_id],
                actor_user_id=actor[0],
                ip=actor[1],
            )
            s.commit()

    async def events() -> AsyncIterator[str]:
        yield ": connected\n\n"
        loop = asyncio.get_running_loop()
        subscription = feed.subscribe()
        deadline = None if max_seconds is None else loop.time() + max_seconds
        # One pending "next alert" at a time, kept across keep-alives (cancelling it would
        # end the subscription).
        pending: asyncio.Future[dict[str, Any]] | None = None
        try:
            while True:
                timeout = KEEPALIVE_S
                if deadline is not None:
                    timeout = min(timeout, deadline - loop.time())
                    if timeout <= 0:
                        return
                if pending is None:
                    pending = asyncio.ensure_future(anext(subscription))
                done, _ = await asyncio.wait({pending}, timeout=timeout)
                if not done:
                    yield ": keep-alive\n\n"
                    continue
                alert, pending = pending.result(), None
                patient_id = alert.get("patient_id")
                if allowed is not None and patient_id not in allowed:
                    continue
                if isinstance(patient_id, int):
                    await asyncio.to_thread(audit, patient_id)
                yield f"event: alert\ndata: {json.dumps(alert, default=str)}\n\n"
        finally:
            if pending is not None:
                pending.cancel()
            with contextlib.suppress(Exception):
                await subscription.aclose()  # type: ignore[attr-defined]

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )
