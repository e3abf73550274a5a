"""HTML pages of the dashboard: login, ward, patient, study, alerts, admin, patient self-view.

Server-rendered Jinja2 pages; ``static/app.js`` only enhances them (live alert feed over
server-sent events, one-click acknowledge, heatmap opacity). Browser sessions carry the same
JWT as the JSON API, in an HttpOnly ``SameSite=Strict`` cookie set by the login form, and
every page applies the same rules as the API: a clinician sees only assigned patients, a
patient only themself (anything else is a 404 that reveals nothing), an admin manages
accounts, patients and devices. Each page that shows patient data writes audit rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from iomt.api.context import context_of
from iomt.api.pages import session as web
from iomt.api.pages.charts import LEVEL_STYLES
from iomt.api.pages.overlay import heatmap_overlay
from iomt.api.pages.views import (
    ONLINE_WINDOW,
    build_admin_page,
    build_patient_page,
    build_ward,
    operating_point,
    to_alert_views,
    to_patient_info,
    to_study_view,
)
from iomt.domain.triage import TriageLevel
from iomt.errors import IomtError, NotFound, ValidationError
from iomt.store import crud
from iomt.store.models import DEVICE_KIND_VALUES, Alert
from iomt.store.models import Study as StudyRow

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

templates = Jinja2Templates(directory=str(TEMPLATES_DIR))

router = APIRouter(include_in_schema=False)

T = TypeVar("T")

#: Every HTML page: not cached (patient data), not framed, scripts and data from here only.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
#: Roles that see alerts and may acknowledge them (as in the JSON API).
STAFF = ("clinician", "admin")
#: Time ranges offered on the patient page (hours).
PERIOD_CHOICES = (2, 6, 24, 72)
#: How often the live feed looks for new alerts, and how often it sends a keep-alive.
FEED_POLL_SECONDS = 1.0
FEED_KEEPALIVE_SECONDS = 15.0

DbDep = Annotated[Session, Depends(web.db_session)]
UserDep = Annotated[web.PageUser, Depends(web.page_user)]


def _age_text(moment: datetime, now: datetime) -> str:
    """``"3 min ago"`` style text (the exact time is in the element's title)."""
    seconds = max((now - moment).total_seconds(), 0)
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h ago"
    return f"{int(seconds // 86400)} d ago"


def _legend_swatch(level: TriageLevel) -> Markup:
    """A small inline SVG swatch with the level's pattern (same look as the charts)."""
    style = LEVEL_STYLES[level]
    pattern = {
        "dots": f'<circle cx="5" cy="7" r="2" fill="{style.colour}"/>'
        f'<circle cx="15" cy="7" r="2" fill="{style.colour}"/>',
        "diagonal": f'<path d="M0,14 L14,0 M8,14 L22,0" stroke="{style.colour}" stroke-width="2"/>',
        "cross": f'<path d="M0,0 L22,14 M22,0 L0,14" stroke="{style.colour}" stroke-width="2"/>',
    }.get(style.pattern, "")
    return Markup(
        f'<svg viewBox="0 0 22 14" aria-hidden="true"><rect width="22" height="14" '
        f'fill="{style.colour}" fill-opacity="0.25"/>{pattern}</svg>'
    )


templates.env.globals.update(
    age_text=_age_text,
    level_icon=lambda level: LEVEL_STYLES[level].icon,
)

LEGEND = [
    {"swatch": _legend_swatch(level), "letter": style.letter, "label": level.label}
    for level, style in LEVEL_STYLES.items()
]


def _render(
    request: Request,
    name: str,
    user: web.PageUser | None,
    db: Session | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render a page with the layout's common context (user, CSRF token, open-alert count)."""
    open_alerts = None
    if user is not None and db is not None and user.role in ("clinician", "admin"):
        open_alerts = web.count_open_alerts(db, user)
    base = {
        "user": user,
        "csrf": web.csrf_token(request),
        "open_alerts": open_alerts,
        "flashes": context.pop("flashes", []),
        "now": datetime.now(UTC),
    }
    response = templates.TemplateResponse(
        request, name, {**base, **context}, status_code=status_code
    )
    response.headers.update(PAGE_HEADERS)
    return response


def _denied(
    request: Request, user: web.PageUser | None, db: Session | None, status_code: int = 404
) -> HTMLResponse:
    """A 403 or 404 page that names nothing: not the patient, not whether it exists."""
    heading, message = (
        ("Not allowed", "You may not see this page.")
        if status_code == 403
        else ("Not found", "There is no such page, or you may not see it.")
    )
    return _render(
        request,
        "error.html",
        user,
        db,
        status_code=status_code,
        heading=heading,
        message=message,
    )


def _forbidden(request: Request, user: web.PageUser, db: Session) -> HTMLResponse:
    """403 for a page the user's role does not have."""
    return _render(
        request,
        "error.html",
        user,
        db,
        status_code=403,
        heading="Not allowed",
        message=f"This page is not available to the {user.role} role.",
    )


def _audit(request: Request, db: Session, user: web.PageUser, patient_ids: list[int]) -> None:
    """Record that ``user`` read these patients' data through this page (committed)."""
    web.audit_read(db, user=user, patient_ids=patient_ids, request=request)


# ------------------------------------------------------------------------- login / out


@router.get("/", response_model=None)
def home(request: Request) -> Response:
    """Send each role to its start page (or to the login form)."""
    user = web.optional_user(request)
    if user is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(web.home_for(user), status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "") -> HTMLResponse:
    """The sign-in form."""
    return _render(
        request, "login.html", None, None, error=None, username="", next_url=web.safe_next(next)
    )


@router.post("/login", response_model=None)
def login_submit(
    request: Request,
    db: DbDep,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    """Check the password; on success set the session cookie and go to the start page."""
    user = web.login(db, username=username, password=password)
    if user is None:
        log.info("dashboard login failed for %r", username[:64])
        return _render(
            request,
            "login.html",
            None,
            None,
            status_code=401,
            error="Wrong user name or password.",
            username=username,
            next_url=web.safe_next(next),
        )
    target = web.safe_next(next) or web.home_for(user)
    response = RedirectResponse(target, status_code=303)
    web.set_session_cookie(request, response, user)
    return response


@router.post("/logout", response_model=None)
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    """Forget the session cookie."""
    response = RedirectResponse("/login", status_code=303)
    if web.csrf_ok(request, csrf):
        web.clear_session_cookie(response)
    return response


# ----------------------------------------------------------------------------- clinician


@router.get("/ward", response_class=HTMLResponse)
def ward(request: Request, user: UserDep, db: DbDep) -> HTMLResponse:
    """The clinician's patients (an admin's: all), most urgent first."""
    if user.role == "patient":
        return _forbidden(request, user, db)
    now = datetime.now(UTC)
    ids = web.visible_patient_ids(db, user)
    rows = build_ward(db, patient_ids=ids, now=now)
    _audit(request, db, user, [row.patient_id for row in rows])
    return _render(
        request,
        "ward.html",
        user,
        db,
        nav="ward",
        rows=rows,
        online_minutes=int(ONLINE_WINDOW.total_seconds() // 60),
    )


def _patient_response(
    request: Request, user: web.PageUser, db: Session, patient_id: int, hours: int, self_view: bool
) -> HTMLResponse:
    hours = hours if hours in PERIOD_CHOICES else 24
    now = datetime.now(UTC)
    try:
        page = build_patient_page(db, patient_id=patient_id, now=now, hours=hours)
    except NotFound:
        return _denied(request, user, db, 404)
    alerts = crud.list_alerts(db, patient_ids=[patient_id], limit=10)
    _audit(request, db, user, [patient_id])
    return _render(
        request,
        "patient.html",
        user,
        db,
        nav="me" if self_view else "ward",
        self_view=self_view,
        page=page,
        patient=page.patient,
        charts=page.charts,
        verdict=page.verdict,
        verdicts=page.verdicts,
        studies=page.studies,
        devices=page.devices,
        alerts=to_alert_views(db, alerts, can_ack=user.role in STAFF),
        legend=LEGEND,
        period_choices=PERIOD_CHOICES,
        period_hours=hours,
        period_start=page.period_start,
        period_end=page.period_end,
    )


@router.get("/patients/{patient_id}", response_class=HTMLResponse)
def patient_page(
    request: Request, patient_id: int, user: UserDep, db: DbDep, hours: int = 24
) -> HTMLResponse:
    """One patient's vitals, windows, latest verdict explained, studies and alerts."""
    access = web.patient_access(db, user, patient_id)
    if access != 200:
        return _denied(request, user, db, access)
    return _patient_response(
        request, user, db, patient_id, hours, self_view=user.patient_id == patient_id
    )


@router.get("/me", response_class=HTMLResponse, response_model=None)
def self_view(request: Request, user: UserDep, db: DbDep, hours: int = 24) -> Response:
    """A patient's own page."""
    if user.role != "patient" or user.patient_id is None:
        return RedirectResponse(web.home_for(user), status_code=303)
    return _patient_response(request, user, db, user.patient_id, hours, self_view=True)


# -------------------------------------------------------------------------------- studies


def _readable_study(db: Session, user: web.PageUser, study_id: int) -> StudyRow | int:
    """The study if the user may read its patient's data, else the HTTP status (403/404)."""
    try:
        study = crud.get_study(db, study_id=study_id)
    except NotFound:
        # Same answer as for another patient's study when the caller is not an admin.
        return 404 if user.role == "admin" else 403
    access = web.patient_access(db, user, study.patient_id)
    return study if access == 200 else access


def _card_operating_point(request: Request, model_id: str) -> list[tuple[str, str]]:
    """The held-out performance at the frozen threshold, from the model's registry card."""
    from iomt.inference.registry import ModelRegistry

    try:
        card = ModelRegistry.from_settings(context_of(request).settings).get(model_id).card
    except IomtError:
        return []
    return operating_point(card.metrics)


@router.get("/studies/{study_id}", response_class=HTMLResponse)
def study_page(request: Request, study_id: int, user: UserDep, db: DbDep) -> HTMLResponse:
    """The image, its findings with probability and threshold, heatmap toggle, boxes, model."""
    study = _readable_study(db, user, study_id)
    if isinstance(study, int):
        return _denied(request, user, db, study)
    view = to_study_view(study)
    cards = {f.model_id: _card_operating_point(request, f.model_id) for f in view.findings}
    patient = to_patient_info(crud.get_patient(db, patient_id=study.patient_id))
    _audit(request, db, user, [study.patient_id])
    return _render(
        request,
        "study.html",
        user,
        db,
        nav="me" if user.role == "patient" else "ward",
        study=view,
        finding=view.finding,
        findings=view.findings,
        patient=patient,
        patient_url="/me" if user.role == "patient" else f"/patients/{patient.id}",
        image_url=f"/studies/{study.id}/image",
        cards=cards,
    )


@router.get("/studies/{study_id}/image", response_model=None)
def study_image(request: Request, study_id: int, user: UserDep, db: DbDep) -> Response:
    """The study's image for the browser (DICOM is converted to PNG on the fly)."""
    study = _readable_study(db, user, study_id)
    if isinstance(study, int):
        return _denied(request, user, db, study)
    path = web.image_file(request, study.path)
    if path is None:
        return _denied(request, user, db, 404)
    _audit(request, db, user, [study.patient_id])
    if study.media_type in ("image/png", "image/jpeg"):
        return FileResponse(path, media_type=study.media_type, headers=web.PRIVATE_CACHE)
    return Response(_png_of(path), media_type="image/png", headers=web.PRIVATE_CACHE)


def _png_of(path: Path) -> bytes:
    """Decode any supported image (DICOM included) and re-encode it as PNG."""
    from PIL import Image

    from iomt.inference.images import load_image

    buffer = io.BytesIO()
    Image.fromarray(load_image(path)).save(buffer, format="PNG")
    return buffer.getvalue()


@router.get("/studies/{study_id}/findings/{finding_id}/heatmap.png", response_model=None)
def finding_heatmap(
    request: Request, study_id: int, finding_id: int, user: UserDep, db: DbDep
) -> Response:
    """The heatmap PNG of one finding (same access rule as the study)."""
    study = _readable_study(db, user, study_id)
    if isinstance(study, int):
        return _denied(request, user, db, study)
    finding = next((f for f in study.findings if f.id == finding_id), None)
    path = (
        web.image_file(request, finding.heatmap_path) if finding and finding.heatmap_path else None
    )
    if path is None:
        return _denied(request, user, db, 404)
    _audit(request, db, user, [study.patient_id])
    return Response(heatmap_overlay(path), media_type="image/png", headers=web.PRIVATE_CACHE)


# --------------------------------------------------------------------------------- alerts


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(request: Request, user: UserDep, db: DbDep) -> HTMLResponse:
    """Open alerts (live) and the acknowledged history."""
    if user.role == "patient":
        return _forbidden(request, user, db)
    ids = web.visible_patient_ids(db, user)
    open_rows = crud.list_alerts(db, patient_ids=ids, unacknowledged_only=True, limit=200)
    history = [a for a in crud.list_alerts(db, patient_ids=ids, limit=300) if a.acknowledged_at][
        :100
    ]
    _audit(request, db, user, [a.patient_id for a in open_rows + history])
    can_ack = user.role in STAFF
    return _render(
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
            web.audit_read(db, user=user, patient_ids=[a.patient_id for a in rows], request=request)
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
    web.acknowledge(db, user=user, alert=alert, request=request)
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


# ---------------------------------------------------------------------------------- admin

_ADMIN_MESSAGES = {
    "patient": "Patient registered.",
    "assigned": "Clinician assigned.",
    "already": "That clinician was already assigned to that patient.",
    "user": "Account created.",
}


def _admin_response(
    request: Request,
    user: web.PageUser,
    db: Session,
    *,
    flashes: list[dict[str, Any]] | None = None,
    new_device: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    page = build_admin_page(db, now=datetime.now(UTC))
    return _render(
        request,
        "admin.html",
        user,
        db,
        status_code=status_code,
        nav="admin",
        flashes=flashes or [],
        new_device=new_device,
        patients=page.patients,
        clinicians=page.clinicians,
        devices=page.devices,
        dead_letters=page.dead_letters,
        dead_total=page.dead_total,
        device_kinds=DEVICE_KIND_VALUES,
    )


@router.get("/admin", response_class=HTMLResponse)
def admin_page(request: Request, user: UserDep, db: DbDep, msg: str = "") -> HTMLResponse:
    """Registration forms, assignments, devices and dead letters."""
    if user.role != "admin":
        return _forbidden(request, user, db)
    flashes = [{"text": _ADMIN_MESSAGES[msg], "error": False}] if msg in _ADMIN_MESSAGES else []
    return _admin_response(request, user, db, flashes=flashes)


def _admin_action(
    request: Request,
    user: web.PageUser,
    db: Session,
    csrf: str,
    action: Callable[[], T],
) -> T | HTMLResponse:
    """Run an admin change: role and CSRF checked, committed, or shown as an error."""
    if user.role != "admin":
        return _forbidden(request, user, db)
    if not web.csrf_ok(request, csrf):
        return _admin_response(
            request,
            user,
            db,
            flashes=[{"text": "The form expired; please try again.", "error": True}],
            status_code=403,
        )
    try:
        result = action()
        db.commit()
    except (ValidationError, NotFound) as exc:
        db.rollback()
        return _admin_response(
            request, user, db, flashes=[{"text": str(exc), "error": True}], status_code=400
        )
    return result


@router.post("/admin/patients", response_model=None)
def admin_register_patient(
    request: Request,
    user: UserDep,
    db: DbDep,
    name: Annotated[str, Form()] = "",
    mrn: Annotated[str, Form()] = "",
    birth_date: Annotated[str, Form()] = "",
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Register a patient, optionally with a login of their own."""

    def register() -> Response:
        if not name.strip() or not mrn.strip():
            raise ValidationError("a patient needs a name and a medical record number")
        try:
            born = date.fromisoformat(birth_date) if birth_date else None
        except ValueError:
            raise ValidationError(f"birth date {birth_date!r} is not YYYY-MM-DD") from None
        patient = web.register_patient(
            db, user=user, name=name.strip(), mrn=mrn.strip(), birth_date=born, request=request
        )
        if username.strip():
            web.create_account(
                db,
                user=user,
                username=username.strip(),
                password=password,
                role="patient",
                patient_id=patient.id,
                request=request,
            )
        return RedirectResponse("/admin?msg=patient", status_code=303)

    return _admin_action(request, user, db, csrf, register)


@router.post("/admin/devices", response_model=None)
def admin_register_device(
    request: Request,
    user: UserDep,
    db: DbDep,
    device_id: Annotated[str, Form()] = "",
    kind: Annotated[str, Form()] = "wearable",
    patient_id: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Register a device and show its secret once (the page is not cached)."""

    def register() -> dict[str, str]:
        pid = int(patient_id) if patient_id.strip().isdigit() else None
        return web.register_device(
            db, user=user, device_id=device_id.strip(), kind=kind, patient_id=pid, request=request
        )

    result = _admin_action(request, user, db, csrf, register)
    if isinstance(result, Response):
        return result
    return _admin_response(
        request,
        user,
        db,
        flashes=[{"text": f"Device {result['device_id']} registered.", "error": False}],
        new_device=result,
    )


@router.post("/admin/assignments", response_model=None)
def admin_assign(
    request: Request,
    user: UserDep,
    db: DbDep,
    clinician_id: Annotated[int, Form()],
    patient_id: Annotated[int, Form()],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Make a clinician responsible for a patient."""

    def assign() -> Response:
        new = web.assign(
            db, user=user, clinician_id=clinician_id, patient_id=patient_id, request=request
        )
        return RedirectResponse(f"/admin?msg={'assigned' if new else 'already'}", status_code=303)

    return _admin_action(request, user, db, csrf, assign)


@router.post("/admin/users", response_model=None)
def admin_create_user(
    request: Request,
    user: UserDep,
    db: DbDep,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "clinician",
    full_name: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Create a clinician or admin account."""

    def create() -> Response:
        if role not in ("clinician", "admin"):
            raise ValidationError("staff accounts are clinicians or admins")
        web.create_account(
            db,
            user=user,
            username=username.strip(),
            password=password,
            role=role,
            full_name=full_name.strip() or None,
            request=request,
        )
        return RedirectResponse("/admin?msg=user", status_code=303)

    return _admin_action(request, user, db, csrf, create)
