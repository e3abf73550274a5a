"""The ward, the patient page and the patient's own page."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import (
    HTMLResponse,
    RedirectResponse,
    Response,
)
from sqlalchemy.orm import Session

from iomt.api.pages import session as web
from iomt.api.pages.feed import to_alert_views
from iomt.api.pages.patient import build_patient_page
from iomt.api.pages.rendering import (
    LEGEND,
    STAFF,
    DbDep,
    UserDep,
    audit,
    denied,
    forbidden,
    render,
)
from iomt.api.pages.ward import ONLINE_WINDOW, build_ward
from iomt.errors import NotFound
from iomt.store import crud

router = APIRouter(include_in_schema=False)


#: Time ranges offered on the patient page (hours).
PERIOD_CHOICES = (2, 6, 24, 72)


@router.get("/ward", response_class=HTMLResponse)
def ward(request: Request, user: UserDep, db: DbDep) -> HTMLResponse:
    """The clinician's patients (an admin's: all), most urgent first."""
    if user.role == "patient":
        return forbidden(request, user, db)
    now = datetime.now(UTC)
    ids = web.visible_patient_ids(db, user)
    rows = build_ward(db, patient_ids=ids, now=now)
    audit(request, db, user, [row.patient_id for row in rows])
    return render(
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
        return denied(request, user, db, 404)
    alerts = crud.list_alerts(db, patient_ids=[patient_id], limit=10)
    audit(request, db, user, [patient_id])
    return render(
        request,
        "patient.html",
        user,
        db,
        nav="me" if self_view else "ward",
        self_view=self_view,
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
        return denied(request, user, db, access)
    return _patient_response(
        request, user, db, patient_id, hours, self_view=user.patient_id == patient_id
    )


@router.get("/me", response_class=HTMLResponse, response_model=None)
def self_view(request: Request, user: UserDep, db: DbDep, hours: int = 24) -> Response:
    """A patient's own page."""
    if user.role != "patient":
        return RedirectResponse(web.home_for(user), status_code=303)
    if user.patient_id is None:  # the patient record was removed: nothing to show
        return denied(request, user, db, 404)
    return _patient_response(request, user, db, user.patient_id, hours, self_view=True)
