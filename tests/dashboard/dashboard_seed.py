"""A small, realistic ward written through the store's CRUD functions (for the dashboard tests).

Three patients whose database ids are NOT in urgency order (so the ward sort is really
tested): Cara (well), Bert (mild, mildly abnormal vitals), Alice (deteriorating to critical,
with a chest X-ray finding and a heatmap, and an open critical alert). Two clinicians: Ada
(all three) and Bob (Bert only); an admin; patient logins for Alice and Bert.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from iomt.alerts.dispatch import AlertDispatcher
from iomt.alerts.rules import verdict_alert
from iomt.api.services.images import ImageStore
from iomt.api.services.imaging import analyse_study, store_study
from iomt.domain.analysis import Box, ImageFinding, utc_floor
from iomt.domain.imaging import Modality
from iomt.domain.triage import TriageLevel
from iomt.domain.vitals import Reading, VitalKind
from iomt.inference.registry import ModelRegistry
from iomt.inference.step import OnnxImageAnalysis
from iomt.store import crud
from iomt.triage.step import default_triage_step

PASSWORD = "correct-horse-42"
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
CXR_DIR = SHARED_DATA / "chest" / "cxr-covid"
WBC_DIR = SHARED_DATA / "blood" / "wbc-types"


@dataclass
class Seeded:
    """Ids and secrets the tests need."""

    patients: dict[str, int] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    device_secrets: dict[str, str] = field(default_factory=dict)
    study_id: int = 0
    finding_id: int = 0
    open_alert_id: int = 0
    smear_study_id: int = 0
    alice_alert_ids: list[int] = field(default_factory=list)


def _xray_png() -> bytes:
    """A real chest X-ray from the shared data set (or a synthetic one if it is absent)."""
    files = sorted((CXR_DIR / "images").glob("*.png")) if CXR_DIR.is_dir() else []
    if files:
        return files[0].read_bytes()
    yy, xx = np.mgrid[0:256, 0:256]
    lungs = np.exp(-(((xx - 80) / 45) ** 2 + ((yy - 130) / 70) ** 2))
    lungs += np.exp(-(((xx - 176) / 45) ** 2 + ((yy - 130) / 70) ** 2))
    pixels = (200 - 150 * lungs).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _heatmap_png(width: int, height: int) -> bytes:
    """A grayscale class-activation map as the analysis step stores it (0-255, one channel)."""
    yy, xx = np.mgrid[0:height, 0:width]
    heat = np.exp(
        -(((xx - 0.3 * width) / (0.12 * width)) ** 2 + ((yy - 0.6 * height) / (0.15 * height)) ** 2)
    )
    buffer = io.BytesIO()
    Image.fromarray(np.round(255 * heat).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _vital(kind: VitalKind, minute: float, course: str) -> float:
    """A plausible value at ``minute`` (0 = two hours ago, 120 = now) for a course."""
    wobble = math.sin(minute / 3.0)
    worse = max(0.0, (minute - 40) / 80) if course == "deteriorating" else 0.0
    mild = 1.0 if course == "mild" else 0.0
    if kind is VitalKind.TEMPERATURE:
        return round(98.4 + 0.2 * wobble + 1.4 * mild + 5.0 * worse, 1)
    if kind is VitalKind.SPO2:
        return round(97.5 + 0.5 * wobble - 2.0 * mild - 11.0 * worse, 1)
    if kind is VitalKind.HEART_RATE:
        return round(72 + 3 * wobble + 16 * mild + 70 * worse)
    return round(15 + wobble + 4 * mild + 16 * worse)


def seed(session: Session, *, image_root: Path, now: datetime | None = None) -> Seeded:
    """Write the ward into an empty, migrated database; commits. Returns ids and secrets."""
    now = now or datetime.now(UTC)
    out = Seeded()
    courses = {"Cara Well": "well", "Bert Mild": "mild", "Alice Critical": "deteriorating"}
    for index, name in enumerate(courses):
        patient = crud.create_patient(session, name=name, mrn=f"MRN-{1000 + index}")
        out.patients[name.split()[0].lower()] = patient.id
    out.users["admin"] = crud.create_user(
        session, username="admin", password=PASSWORD, role="admin", full_name="Ann Admin"
    ).id
    for username, full_name in (("ada", "Dr Ada Lovelace"), ("bob", "Dr Bob Bell")):
        out.users[username] = crud.create_user(
            session, username=username, password=PASSWORD, role="clinician", full_name=full_name
        ).id
    for key in ("alice", "bert"):
        out.users[key] = crud.create_user(
            session, username=key, password=PASSWORD, role="patient", patient_id=out.patients[key]
        ).id
    for key in ("cara", "bert", "alice"):
        crud.assign_clinician(session, clinician_id=out.users["ada"], patient_id=out.patients[key])
    crud.assign_clinician(session, clinician_id=out.users["bob"], patient_id=out.patients["bert"])

    device_of: dict[str, int] = {}
    for key in ("cara", "bert", "alice"):
        device, secret = crud.register_device(
            session, device_id=f"band-{key}", kind="wearable", patient_id=out.patients[key]
        )
        out.device_secrets[device.device_id] = secret
        device_of[device.device_id] = out.patients[key]
    _, secret = crud.register_device(session, device_id="xray-1", kind="imaging")
    out.device_secrets["xray-1"] = secret

    # Readings start on a window boundary about two hours ago, so every judged window is full
    # (a window with too few readings is judged on missing inputs, which would make the
    # expected verdicts depend on the time of day the tests run).
    window = timedelta(minutes=15)
    start = first_window = utc_floor(now - timedelta(hours=2), 15)
    for key, course in zip(("cara", "bert", "alice"), courses.values(), strict=True):
        device_id = f"band-{key}"
        readings = []
        # Cara's band went silent at a window boundary at least 30 minutes ago: it is offline.
        until = utc_floor(now - timedelta(minutes=30), 15) if key == "cara" else now
        for minute in range(int((until - start).total_seconds() // 60)):
            moment = start + timedelta(minutes=minute)
            for offset, kind in enumerate(
                (VitalKind.TEMPERATURE, VitalKind.SPO2, VitalKind.HEART_RATE, VitalKind.RESP_RATE)
            ):
                readings.append(
                    Reading(
                        device_id=device_id,
                        seq=minute * 4 + offset,
                        kind=kind,
                        value=_vital(kind, minute, course),
                        time=moment,
                        latitude=51.5072 + 0.001 * offset if key == "alice" else None,
                        longitude=-0.1276 if key == "alice" else None,
                    )
                )
        received = now - timedelta(minutes=30) if key == "cara" else now
        crud.insert_readings(
            session, readings=readings, patient_id_by_device=device_of, received_at=received
        )
    # Every closed window is judged by the real FLCD step, and the real alert rules raise
    # the alerts (through the dispatcher, as the ingest path does).
    step = default_triage_step()
    dispatcher = AlertDispatcher(sessionmaker(bind=session.get_bind()))
    for key in ("cara", "bert", "alice"):
        patient_id = out.patients[key]
        starts = []
        moment = first_window
        while moment + window <= now:
            starts.append(moment)
            moment += window
        windows = [
            crud.readings_for_window(session, patient_id=patient_id, start=s0, end=s0 + window)
            for s0 in starts
        ]
        windows = [w for w in windows if any(w.values.values())]  # Cara's silent tail
        previous: TriageLevel | None = None
        for vitals, verdict in zip(windows, step.assess(windows), strict=True):
            row, _ = crud.store_verdict(
                session,
                patient_id=patient_id,
                window_start=vitals.start,
                window_end=vitals.end,
                verdict=verdict,
                location=vitals.location,
            )
            draft = verdict_alert(
                patient_id=patient_id,
                verdict_id=row.id,
                window_start=vitals.start,
                window_end=vitals.end,
                verdict=verdict,
                previous=previous,
                location=vitals.location,
            )
            if draft is not None:
                raised = dispatcher.raise_in(session, draft)
                if raised is not None and key == "alice":
                    out.alice_alert_ids.append(int(raised["id"]))
            previous = verdict.level

    # Alice's chest X-ray with a hand-made finding (a fixture, named as such, so the page's
    # rendering of probability, threshold, heatmap and box can be checked against known values;
    # the smear study below is analysed by a real shipped model).
    images = ImageStore(image_root)
    png = _xray_png()
    digest, relative = images.put(png)
    with Image.open(io.BytesIO(png)) as image:
        width, height = image.size
    study, _ = crud.add_study(
        session,
        patient_id=out.patients["alice"],
        device_id="xray-1",
        modality="CR",
        sha256=digest,
        path=relative,
        media_type="image/png",
        width=width,
        height=height,
        task="chest/cxr-covid",
    )
    crud.set_study_status(session, study=study, status="analysed")
    _, heat_relative = images.put(_heatmap_png(width, height))
    finding = crud.add_finding(
        session,
        study_id=study.id,
        finding=ImageFinding(
            label="covid",
            probability=0.91,
            threshold=0.42,
            positive=True,
            model_id="test-fixture/cxr-covid",
            model_version="fixture-1",
            probabilities={"covid": 0.91, "non-covid": 0.09},
            boxes=(Box("opacity", 0.77, 0.18 * width, 0.45 * height, 0.45 * width, 0.78 * height),),
        ),
        heatmap_path=heat_relative,
    )
    out.study_id, out.finding_id = study.id, finding.id

    # Alice's first alert was seen and acknowledged; the newest stays open.
    first_alert = crud.get_alert(session, alert_id=out.alice_alert_ids[0])
    crud.acknowledge_alert(session, alert=first_alert, user_id=out.users["ada"])
    out.open_alert_id = out.alice_alert_ids[-1]
    crud.add_dead_letter(
        session,
        source="mqtt",
        device_id="band-bert",
        topic="iomt/devices/band-bert/readings",
        payload=b'{"kind": "spo2", "value": 180}',
        reason="spo2=180 % is outside the plausible range [50, 100]",
    )
    crud.add_dead_letter(
        session,
        source="http",
        device_id=None,
        topic=None,
        payload=b"not json",
        reason="body is not valid JSON: Expecting value: line 1 column 1 (char 0)",
    )
    session.commit()
    out.smear_study_id = _analysed_smear(session, images=images, patient_id=out.patients["bert"])
    return out


def _smear_png() -> bytes:
    """A real blood-smear cell image (a myeloblast) from the shared data, or a synthetic one."""
    files = sorted((WBC_DIR / "images").glob("myeloblast__*.png")) if WBC_DIR.is_dir() else []
    if files:
        return files[0].read_bytes()
    yy, xx = np.mgrid[0:256, 0:256]
    cell = np.exp(-(((xx - 128) / 50) ** 2 + ((yy - 128) / 50) ** 2))
    rgb = np.stack([230 - 120 * cell, 200 - 150 * cell, 220 - 40 * cell], axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _analysed_smear(session: Session, *, images: ImageStore, patient_id: int) -> int:
    """Upload a smear for a patient and analyse it with the shipped ONNX model, as the API does.

    Returns the study id (0 when no model is registered for microscopy).
    """
    registry = ModelRegistry.from_settings()
    if not registry.find(modality=Modality.MICROSCOPY):
        return 0
    crud.register_device(session, device_id="scope-1", kind="microscope")
    study, _ = store_study(
        session,
        images,
        data=_smear_png(),
        patient_id=patient_id,
        device_id="scope-1",
        modality="SM",
        task="blood/wbc-types",
    )
    session.commit()
    sessions = sessionmaker(bind=session.get_bind(), expire_on_commit=False)
    analyse_study(
        sessions,
        images,
        OnnxImageAnalysis(registry),
        study.id,
        dispatcher=AlertDispatcher(sessions),
    )
    return study.id
