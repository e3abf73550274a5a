"""Request and response bodies of the JSON API (pydantic)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Token(BaseModel):
    """OAuth2 token response."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class Me(BaseModel):
    """Who the caller is."""

    role: str
    name: str
    user_id: int | None
    device_id: str | None
    patient_id: int | None


class UserCreate(BaseModel):
    """A new user (admin only)."""

    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=8, max_length=256)
    role: Literal["admin", "clinician", "patient"]
    patient_id: int | None = None
    full_name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=254)


class UserUpdate(BaseModel):
    """Changes to a user; absent fields stay."""

    password: str | None = Field(default=None, min_length=8, max_length=256)
    active: bool | None = None
    full_name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=254)


class UserOut(_Out):
    """A user, without the password hash."""

    id: int
    username: str
    role: str
    patient_id: int | None
    full_name: str | None
    email: str | None
    active: bool
    created_at: datetime


class PatientCreate(BaseModel):
    """A new patient (admin only)."""

    name: str = Field(min_length=1, max_length=200)
    mrn: str = Field(min_length=1, max_length=64)
    birth_date: date | None = None


class PatientUpdate(BaseModel):
    """Changes to a patient; absent fields stay."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    birth_date: date | None = None


class PatientOut(_Out):
    """A patient with the last known location."""

    id: int
    name: str
    mrn: str
    birth_date: date | None
    last_latitude: float | None
    last_longitude: float | None
    last_location_at: datetime | None
    created_at: datetime


class DeviceCreate(BaseModel):
    """A new device (admin only)."""

    device_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    kind: Literal["wearable", "imaging", "microscope"]
    patient_id: int | None = None


class DeviceUpdate(BaseModel):
    """Rebind or (de)activate a device."""

    patient_id: int | None = None
    active: bool | None = None


class DeviceOut(_Out):
    """A device, without its secret."""

    id: int
    device_id: str
    kind: str
    patient_id: int | None
    active: bool
    created_at: datetime
    last_seen: datetime | None


class DeviceCredentials(DeviceOut):
    """A device with its secret: returned once, at registration or rotation."""

    secret: str


class ReadingItem(BaseModel):
    """One reading in an upload (units converted and plausibility checked on arrival)."""

    seq: int
    kind: str
    value: float
    unit: str | None = None
    time: datetime | float
    lat: float | None = None
    lon: float | None = None


class ReadingsUpload(BaseModel):
    """A batch of readings from one device (documents the body; validated by the ingest
    payload rules)."""

    readings: list[ReadingItem]


class UploadResult(BaseModel):
    """What a reading upload stored, after the commit."""

    received: int
    stored: int
    duplicates: int


class ItemError(BaseModel):
    """Why one item of a batch was refused."""

    index: int
    reason: str


class ReadingOut(_Out):
    """A stored reading (canonical unit)."""

    id: int
    device_id: str
    seq: int
    kind: str
    value: float
    time: datetime
    latitude: float | None
    longitude: float | None
    received_at: datetime


class VerdictOut(_Out):
    """A triage verdict of one window."""

    id: int
    patient_id: int
    window_start: datetime
    window_end: datetime
    method: str
    level: str
    value: float
    aggregates: dict[str, Any]
    missing: list[Any]
    explanation: dict[str, Any]
    news2: int | None
    news2_partial: bool
    latitude: float | None
    longitude: float | None
    created_at: datetime


class FindingOut(_Out):
    """One model's conclusion about a study."""

    id: int
    label: str
    probability: float
    threshold: float | None
    positive: bool
    model_id: str
    model_version: str
    probabilities: dict[str, Any]
    has_heatmap: bool = False
    boxes: list[Any]
    counts: dict[str, Any]
    created_at: datetime


class StudyOut(_Out):
    """A study with its findings."""

    id: int
    patient_id: int
    device_id: str | None
    modality: str
    sha256: str
    media_type: str
    width: int
    height: int
    dicom: dict[str, Any] | None
    task: str | None
    uploaded_at: datetime
    status: str
    error: str | None
    findings: list[FindingOut] = []


class StudyUploaded(StudyOut):
    """Upload result: the study and whether this image was new."""

    duplicate: bool


class AlertOut(_Out):
    """An alert."""

    id: int
    patient_id: int
    verdict_id: int | None
    finding_id: int | None
    severity: str
    title: str
    body: str
    latitude: float | None
    longitude: float | None
    created_at: datetime
    acknowledged_by: int | None
    acknowledged_at: datetime | None


class AuditOut(_Out):
    """An audit row."""

    id: int
    time: datetime
    actor_user_id: int | None
    actor_device_id: str | None
    action: str
    patient_id: int | None
    resource: str
    ip: str | None


class DeadLetterOut(_Out):
    """A dead letter (payload shown as text, undecodable bytes replaced)."""

    id: int
    source: str
    device_id: str | None
    topic: str | None
    payload: str
    reason: str
    received_at: datetime
