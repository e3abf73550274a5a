"""The alerts page, its live feed (server-sent events) and one-click acknowledgement."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from iomt.api.context import context_of
from iomt.api.pages import actions
from iomt.api.pages import session as web
from iomt.api.pages.feed import to_alert_views
from iomt.api.pages.rendering import (
    STAFF,
    DbDep,
    UserDep,
    audit,
    forbidden,
    render,
    templates,
)
from iomt.errors import NotFound
from iomt.store import crud
from iomt.store.models import Alert

router = APIRouter(include_in_schema=False)


#: How often the live feed looks for new alerts, and how often it sends a keep-alive.
FEED_POLL_SECONDS = 1.0
FEED_KEEPALIVE_SECONDS = 15.0


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(request: Request, user: UserDep, db: DbDep) -> HTMLResponse:
    """Open alerts (live) and the acknowledged history."""
    if user.role == "patient":
        return forbidden(request, user, db)
    ids = web.visible_patient_ids(db, user)
    open_rows = crud.list_alerts(db, patient_ids=ids, unacknowledged_only=True, limit=200)
    history = crud.list_alerts(db, patient_ids=ids, acknowledged_only=True, limit=100)
    audit(request, db, user, [a.patient_id for a in open_rows + history])
    can_ack = user.role in STAFF
    return render(
        request,
        "alerts.html",
        user,
        db,
        nav="alerts",
        open=to_alert_views(db, open_rows, can_ack=can_ack),
        history=to_alert_views(db, history, can_ack=can_ack),
    )


@router.get("/alerts/stream", response_model=None)
async def alerts_stream(
    request: Request,
    user: UserDep,
    max_seconds: Annotated[float | None, Query(ge=0, description="Close after this long")] = None,
) -> Response:
    """Server-sent events: each new alert the user may see, rendered as a feed item."""
    if user.role == "patient":
        return Response(status_code=403)
    factory = web.session_factory(request)
    feed = context_of(request).alert_feed
    csrf = web.csrf_token(request)
    expires = web.session_expiry(request)
    if max_seconds is not None:
        until = datetime.now(UTC) + timedelta(seconds=max_seconds)
        expires = min(expires, until) if expires is not None else until

    def newest_id() -> int:
        with factory() as db:
            return int(db.scalar(select(Alert.id).order_by(Alert.id.desc()).limit(1)) or 0)

    start_after = request.headers.get("last-event-id", "")
    last_id = int(start_after) if start_after.isdigit() else await run_in_threadpool(newest_id)

    def fetch(after: int) -> tuple[int, list[str]]:
        with factory() as db:
            ids = web.visible_patient_ids(db, user)
            query = select(Alert).where(Alert.id > after).order_by(Alert.id).limit(50)
            if ids is not None:
                query = query.where(Alert.patient_id.in_(ids))
            rows = list(db.scalars(query))
            newest = max([after, *(a.id for a in rows)])
            audit(request, db, user, [a.patient_id for a in rows])
            events = []
            for view in to_alert_views(db, rows, can_ack=user.role in STAFF):
                html = templates.get_template("_alert.html").render(alert=view, csrf=csrf)
                payload = json.dumps({"id": view.id, "title": view.title, "html": html})
                events.append(f"id: {view.id}\nevent: alert\ndata: {payload}\n\n")
            return newest, events

    async def listen(wake: asyncio.Event) -> None:
        async for _ in feed.subscribe():
            wake.set()

    async def events() -> AsyncIterator[str]:
        # The database is the record; the in-process feed only wakes us up early, so alerts
        # raised by another worker process still arrive (within one poll interval).
        nonlocal last_id
        wake = asyncio.Event()
        listener = asyncio.create_task(listen(wake))
        yield "retry: 2000\n\n"
        idle = 0.0
        try:
            while not await request.is_disconnected():
                if expires is not None and datetime.now(UTC) >= expires:
                    return  # the session ended: the browser reconnects and is sent to login
                last_id, batch = await run_in_threadpool(fetch, last_id)
                for event in batch:
                    yield event
                idle = 0.0 if batch else idle + FEED_POLL_SECONDS
                if idle >= FEED_KEEPALIVE_SECONDS:
                    idle = 0.0
                    yield ": keep-alive\n\n"
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), FEED_POLL_SECONDS)
                wake.clear()
        finally:
            listener.cancel()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post("/alerts/{alert_id}/ack", response_model=None)
def acknowledge(
    request: Request,
    alert_id: int,
    user: UserDep,
    db: DbDep,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Acknowledge an alert (a clinician of the patient, or an admin): JSON for fetch, else
    a redirect back to the alerts page."""
    wants_json = "application/json" in request.headers.get("accept", "")
    if not web.csrf_ok(request, csrf):
        return JSONResponse({"detail": "bad CSRF token"}, status_code=403)
    if user.role not in STAFF:
        return JSONResponse({"detail": "only clinicians and admins acknowledge alerts"}, 403)
    try:
        alert = crud.get_alert(db, alert_id=alert_id)
    except NotFound:
        alert = None
    if alert is None or not web.may_read_patient(db, user, alert.patient_id):
        return JSONResponse({"detail": "you may not acknowledge this alert"}, status_code=403)
    actions.acknowledge(db, user=user, alert=alert, request=request)
    if wants_json:
        acked_at = alert.acknowledged_at or datetime.now(UTC)
        return JSONResponse(
            {
                "id": alert.id,
                "acknowledged_by": user.display_name,
                "acknowledged_at": acked_at.strftime("%Y-%m-%d %H:%M UTC"),
            }
        )
    return RedirectResponse("/alerts", status_code=303)
