"""Test support for the API tests: a populated app, image bytes, auth headers."""

from __future__ import annotations

import base64
import io
import itertools
from dataclasses import dataclass, field

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from iomt.api.app import create_app
from iomt.api.context import AppContext, app_context
from iomt.api.services.imaging import store_study
from iomt.config import Settings
from iomt.domain.analysis import ImageFinding, ImageInput
from iomt.store import crud


class GradientHeatmapStep:
    """A real (tiny) analysis step for tests: scores the mean brightness, heatmap = intensity."""

    name = "test-brightness"

    def analyse(self, image: ImageInput) -> list[ImageFinding]:
        gray = image.pixels if image.pixels.ndim == 2 else image.pixels.mean(axis=2)
        score = float(gray.mean() / 255.0)
        return [
            ImageFinding(
                label="bright" if score >= 0.5 else "dark",
                probability=score,
                threshold=0.5,
                positive=score >= 0.5,
                model_id="brightness",
                model_version="1",
                probabilities={"bright": score, "dark": 1 - score},
                heatmap=gray.astype(np.float64) / 255.0,
            )
        ]


def png_bytes(value: int = 200, size: tuple[int, int] = (32, 24), noise: bool = True) -> bytes:
    """A grayscale PNG (with some texture unless ``noise`` is off)."""
    rng = np.random.default_rng(value)
    pixels = np.full((size[1], size[0]), value, dtype=np.int16)
    if noise:
        pixels = pixels + rng.integers(-30, 30, size=pixels.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def basic(device_id: str, secret: str) -> dict[str, str]:
    """HTTP Basic header for a device."""
    raw = base64.b64encode(f"{device_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@dataclass
class World:
    """The app, its client and the people and devices in it."""

    app: FastAPI
    client: TestClient
    context: AppContext
    p1: int
    p2: int
    study1: int
    alert1: int
    ids: dict[str, int] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def bearer(self, user_id: int, role: str) -> dict[str, str]:
        token, _ = self.context.tokens.issue_for_user(user_id=user_id, role=role)
        return {"Authorization": f"Bearer {token}"}


def build_world(settings: Settings, *, start_ingest: bool = False, triage: bool = False) -> World:
    """Create the app on ``settings`` and populate it.

    ``start_ingest``: with the ingest runtime (uploads through its group commit); ``triage``:
    its triage scheduler too (built-in threshold rule).
    """
    app = create_app(
        settings, image_step=GradientHeatmapStep(), start_ingest=start_ingest, ingest_triage=triage
    )
    context = app_context(app)
    with context.sessions() as s:
        p1 = crud.create_patient(s, name="Ada", mrn="MRN-A")
        p2 = crud.create_patient(s, name="Bo", mrn="MRN-B")
        users = {
            "admin": crud.create_user(s, username="admin", password="admin-pass", role="admin"),
            "clin_assigned": crud.create_user(
                s, username="drA", password="clinician-a", role="clinician", email="a@x.org"
            ),
            "clin_unassigned": crud.create_user(
                s, username="drB", password="clinician-b", role="clinician"
            ),
            "clin_spare": crud.create_user(
                s, username="drC", password="clinician-c", role="clinician"
            ),
            "patient_self": crud.create_user(
                s, username="ada", password="patient-a", role="patient", patient_id=p1.id
            ),
            "patient_other": crud.create_user(
                s, username="bo", password="patient-b", role="patient", patient_id=p2.id
            ),
        }
        crud.assign_clinician(s, clinician_id=users["clin_assigned"].id, patient_id=p1.id)
        crud.assign_clinician(s, clinician_id=users["clin_unassigned"].id, patient_id=p2.id)
        secrets = {}
        for name, pid in (("dev-a", p1.id), ("dev-b", p2.id), ("dev-spare", p1.id)):
            _, secrets[name] = crud.register_device(
                s, device_id=name, kind="wearable", patient_id=pid
            )
        study, _ = store_study(
            s,
            context.images,
            data=png_bytes(180),
            patient_id=p1.id,
            device_id="dev-a",
            modality="CR",
        )
        s.commit()
        alert, _ = crud.create_alert(
            s, patient_id=p1.id, severity="critical", title="NEWS2 7", body="critical window"
        )
        crud.create_alert(s, patient_id=p2.id, severity="serious", title="other", body="b")
        s.commit()
        ids = {name: u.id for name, u in users.items()}
        p1_id, p2_id, study_id, alert_id = p1.id, p2.id, study.id, alert.id
    from iomt.api.services.imaging import analyse_study

    analyse_study(context.sessions, context.images, context.image_step, study_id)
    client = TestClient(app)
    world = World(
        app=app,
        client=client,
        context=context,
        p1=p1_id,
        p2=p2_id,
        study1=study_id,
        alert1=alert_id,
        ids=ids,
        secrets=secrets,
    )
    for name, uid in ids.items():
        role = "admin" if name == "admin" else name.split("_")[0]
        role = {"clin": "clinician"}.get(role, role)
        world.headers[name] = world.bearer(uid, role)
    world.headers["anon"] = {}
    world.headers["device_own"] = basic("dev-a", secrets["dev-a"])
    world.headers["device_other"] = basic("dev-b", secrets["dev-b"])
    return world
