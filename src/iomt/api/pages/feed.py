"""Alerts as feed items: patient names and acknowledging users resolved, drawn by urgency."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from iomt.domain.triage import TriageLevel
from iomt.store.models import Alert, Patient, User

#: Alert severities (store) drawn with the triage level of the same urgency.
SEVERITY_LEVEL = {
    "info": TriageLevel.NORMAL,
    "warning": TriageLevel.MILD,
    "serious": TriageLevel.SERIOUS,
    "critical": TriageLevel.CRITICAL,
}


@dataclass(frozen=True, slots=True)
class AlertView:
    """An alert line of the feed."""

    id: int
    patient_id: int
    patient_name: str
    severity: str
    level: TriageLevel
    title: str
    body: str
    latitude: float | None
    longitude: float | None
    created_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    can_ack: bool


def to_alert_views(session: Session, alerts: Sequence[Alert], *, can_ack: bool) -> list[AlertView]:
    """Alerts with their patient names and acknowledging users resolved in two queries."""
    patient_ids = {a.patient_id for a in alerts}
    names: dict[int, str] = {
        pid: name
        for pid, name in session.execute(
            select(Patient.id, Patient.name).where(Patient.id.in_(patient_ids))
        )
    }
    user_ids = {a.acknowledged_by for a in alerts if a.acknowledged_by is not None}
    users: dict[int, str] = {
        uid: name
        for uid, name in session.execute(
            select(User.id, func.coalesce(User.full_name, User.username)).where(
                User.id.in_(user_ids)
            )
        )
    }
    views = []
    for alert in alerts:
        level = SEVERITY_LEVEL.get(alert.severity, TriageLevel.NORMAL)
        views.append(
            AlertView(
                id=alert.id,
                patient_id=alert.patient_id,
                patient_name=names.get(alert.patient_id, f"patient {alert.patient_id}"),
                severity=alert.severity,
                level=level,
                title=alert.title,
                body=alert.body,
                latitude=alert.latitude,
                longitude=alert.longitude,
                created_at=alert.created_at,
                acknowledged_at=alert.acknowledged_at,
                acknowledged_by=(
                    users.get(alert.acknowledged_by) if alert.acknowledged_by is not None else None
                ),
                can_ack=can_ack,
            )
        )
    return views
