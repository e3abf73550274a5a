"""Alerts and their notifications (data access only; the rules and channels live in
:mod:`iomt.alerts`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from iomt.errors import NotFound, ValidationError
from iomt.store.models import NOTIFICATION_STATUS_VALUES, Alert, Notification, Patient
from iomt.store.types import utcnow

SEVERITY_VALUES = ("info", "warning", "serious", "critical")


def create_alert(
    session: Session,
    *,
    patient_id: int,
    severity: str,
    title: str,
    body: str,
    verdict_id: int | None = None,
    finding_id: int | None = None,
    location: tuple[float, float] | None = None,
    dedup_key: str | None = None,
) -> tuple[Alert, bool]:
    """Raise an alert (the caller commits). Returns the alert and whether it is new.

    Without an explicit ``location`` the patient's last known location is attached (an
    emergency alert must say where to send help). With a ``dedup_key`` that already exists,
    the existing alert is returned instead of a second one.
    """
    if severity not in SEVERITY_VALUES:
        raise ValidationError(f"severity {severity!r} is not one of {list(SEVERITY_VALUES)}")
    if dedup_key is not None:
        existing = session.scalars(select(Alert).where(Alert.dedup_key == dedup_key)).first()
        if existing is not None:
            return existing, False
    if location is None:
        patient = session.get(Patient, patient_id)
        if patient is None:
            raise NotFound(f"patient {patient_id} does not exist")
        if patient.last_latitude is not None and patient.last_longitude is not None:
            location = (patient.last_latitude, patient.last_longitude)
    alert = Alert(
        patient_id=patient_id,
        severity=severity,
        title=title,
        body=body,
        verdict_id=verdict_id,
        finding_id=finding_id,
        latitude=location[0] if location else None,
        longitude=location[1] if location else None,
        dedup_key=dedup_key,
    )
    session.add(alert)
    session.flush()
    return alert, True


def get_alert(session: Session, *, alert_id: int) -> Alert:
    """Return the alert or raise NotFound."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id} does not exist")
    return alert


def list_alerts(
    session: Session,
    *,
    patient_ids: Iterable[int] | None = None,
    unacknowledged_only: bool = False,
    acknowledged_only: bool = False,
    since: datetime | None = None,
    limit: int = 200,
) -> list[Alert]:
    """Alerts, newest first; ``patient_ids=None`` means all patients.

    ``unacknowledged_only`` keeps the open alerts, ``acknowledged_only`` the history; the
    filters run in the database, so ``limit`` counts only matching rows.
    """
    if unacknowledged_only and acknowledged_only:
        raise ValueError("unacknowledged_only and acknowledged_only exclude each other")
    query = select(Alert)
    if patient_ids is not None:
        query = query.where(Alert.patient_id.in_(list(patient_ids)))
    if unacknowledged_only:
        query = query.where(Alert.acknowledged_at.is_(None))
    if acknowledged_only:
        query = query.where(Alert.acknowledged_at.is_not(None))
    if since is not None:
        query = query.where(Alert.created_at > since)
    return list(
        session.scalars(query.order_by(Alert.created_at.desc(), Alert.id.desc()).limit(limit))
    )


def acknowledge_alert(session: Session, *, alert: Alert, user_id: int) -> bool:
    """Mark an alert acknowledged by a user. Returns False if it already was."""
    if alert.acknowledged_at is not None:
        return False
    alert.acknowledged_by = user_id
    alert.acknowledged_at = utcnow()
    session.flush()
    return True


def add_notification(session: Session, *, alert_id: int, channel: str, target: str) -> Notification:
    """Queue one delivery of an alert over a channel (status ``pending``)."""
    row = Notification(
        alert_id=alert_id,
        channel=channel,
        target=target,
        status="pending",
        attempts=0,
        next_attempt_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def record_attempt(
    session: Session,
    *,
    notification: Notification,
    error: str | None,
    retry_at: datetime | None = None,
) -> None:
    """Record one delivery attempt: sent if ``error`` is None, else pending again at
    ``retry_at`` or failed for good when ``retry_at`` is None."""
    notification.attempts += 1
    if error is None:
        notification.status = "sent"
        notification.sent_at = utcnow()
        notification.last_error = None
        notification.next_attempt_at = None
    else:
        notification.last_error = error
        notification.status = "pending" if retry_at is not None else "failed"
        notification.next_attempt_at = retry_at
    assert notification.status in NOTIFICATION_STATUS_VALUES
    session.flush()


def due_notifications(
    session: Session, *, now: datetime | None = None, limit: int = 100
) -> list[Notification]:
    """Pending notifications whose next attempt is due."""
    now = now or utcnow()
    query = (
        select(Notification)
        .where(
            Notification.status == "pending",
            or_(Notification.next_attempt_at.is_(None), Notification.next_attempt_at <= now),
        )
        .order_by(Notification.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def list_notifications(session: Session, *, alert_id: int) -> list[Notification]:
    """The notifications of one alert."""
    query = select(Notification).where(Notification.alert_id == alert_id).order_by(Notification.id)
    return list(session.scalars(query))
