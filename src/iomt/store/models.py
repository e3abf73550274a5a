"""The tables of iomt (SQLAlchemy 2 typed ORM).

Times are aware UTC datetimes (:class:`~iomt.store.types.UTCDateTime`). Enumerated columns
(role, device kind, study status, ...) are short strings; their allowed values are the
``*_VALUES`` tuples below, checked by the CRUD functions.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from iomt.store.types import BigIntPK, UTCDateTime, utcnow

ROLE_VALUES = ("admin", "clinician", "patient")
DEVICE_KIND_VALUES = ("wearable", "imaging", "microscope")
STUDY_STATUS_VALUES = ("received", "analysing", "analysed", "failed")
NOTIFICATION_STATUS_VALUES = ("pending", "sent", "failed")
DEAD_LETTER_SOURCE_VALUES = ("mqtt", "http", "fhir")

#: Deterministic constraint names, so migrations work the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class Patient(Base):
    """A monitored person, with the last location a device reported."""

    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    mrn: Mapped[str] = mapped_column(String(64), unique=True)
    birth_date: Mapped[date | None] = mapped_column(Date)
    last_latitude: Mapped[float | None] = mapped_column(Float)
    last_longitude: Mapped[float | None] = mapped_column(Float)
    last_location_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    """A person who logs in: admin, clinician or patient (then linked to a patient row)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    full_name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254))
    patient_id: Mapped[int | None] = mapped_column(
        ForeignKey("patients.id", ondelete="SET NULL"), index=True
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ClinicianAssignment(Base):
    """A clinician is responsible for a patient (and sees only such patients)."""

    __tablename__ = "clinician_patients"

    clinician_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)


class Device(Base):
    """A wearable, imaging device or IoT microscope with its own (hashed) credentials.

    ``patient_id`` binds the device to the patient whose data it sends; an imaging device
    without a binding is shared and names the patient on each upload.
    """

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), unique=True)
    patient_id: Mapped[int | None] = mapped_column(
        ForeignKey("patients.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime | None]


class ReadingRow(Base):
    """One stored vital-sign reading (canonical unit). ``(device_id, seq, kind)`` is unique."""

    __tablename__ = "readings"
    __table_args__ = (
        UniqueConstraint("device_id", "seq", "kind"),
        Index("ix_readings_patient_time", "patient_id", "time"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Float)
    time: Mapped[datetime]
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    received_at: Mapped[datetime]


class VerdictRow(Base):
    """A triage verdict for one patient window by one method."""

    __tablename__ = "triage_verdicts"
    __table_args__ = (
        UniqueConstraint("patient_id", "window_start", "method"),
        Index("ix_triage_verdicts_patient_end", "patient_id", "window_end"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    method: Mapped[str] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(16))
    value: Mapped[float] = mapped_column(Float)
    aggregates: Mapped[dict[str, Any]]
    missing: Mapped[list[Any]]
    explanation: Mapped[dict[str, Any]]
    news2: Mapped[int | None] = mapped_column(Integer)
    news2_partial: Mapped[bool] = mapped_column(Boolean, default=True)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Study(Base):
    """An uploaded image (DICOM, PNG or JPEG), stored content-addressed by SHA-256."""

    __tablename__ = "studies"
    __table_args__ = (UniqueConstraint("patient_id", "sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), index=True
    )
    device_id: Mapped[str | None] = mapped_column(String(64))
    modality: Mapped[str] = mapped_column(String(8))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    path: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    dicom: Mapped[dict[str, Any] | None]
    task: Mapped[str | None] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="received")
    error: Mapped[str | None] = mapped_column(Text)

    findings: Mapped[list[Finding]] = relationship(
        back_populates="study", order_by="Finding.id", cascade="all, delete-orphan"
    )


class Finding(Base):
    """One model's conclusion about one study."""

    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(64))
    probability: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    positive: Mapped[bool] = mapped_column(Boolean)
    model_id: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    probabilities: Mapped[dict[str, Any]]
    heatmap_path: Mapped[str | None] = mapped_column(String(255))
    boxes: Mapped[list[Any]]
    counts: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    study: Mapped[Study] = relationship(back_populates="findings")


class Alert(Base):
    """An alert for a patient's clinicians, raised from a verdict or a finding.

    ``dedup_key`` (e.g. ``"verdict:17:critical"``) makes raising idempotent when the same
    verdict or finding is processed twice.
    """

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_patient_created", "patient_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    verdict_id: Mapped[int | None] = mapped_column(
        ForeignKey("triage_verdicts.id", ondelete="SET NULL")
    )
    finding_id: Mapped[int | None] = mapped_column(ForeignKey("findings.id", ondelete="SET NULL"))
    severity: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    dedup_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    acknowledged_at: Mapped[datetime | None]


class Notification(Base):
    """One delivery of an alert over one channel (feed, webhook, e-mail), with retries."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]


class AuditEntry(Base):
    """Who read or changed what, when, from where."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_patient_time", "patient_id", "time"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    time: Mapped[datetime] = mapped_column(default=utcnow)
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor_device_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    patient_id: Mapped[int | None] = mapped_column(Integer)
    resource: Mapped[str] = mapped_column(String(255))
    ip: Mapped[str | None] = mapped_column(String(64))


class DeadLetter(Base):
    """A message or request that could not be accepted, kept with the reason."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    source: Mapped[str] = mapped_column(String(8))
    device_id: Mapped[str | None] = mapped_column(String(64), index=True)
    topic: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
