"""Fixtures for the ingest tests: a migrated SQLite store with one patient and its devices."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from ingest_helpers import Seeded

from iomt.config import Settings
from iomt.ingest.runtime import IngestRuntime
from iomt.store.db import init_db, session_factory
from iomt.store.identity import create_patient, register_device


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Seeded]:
    settings = Settings(data_dir=tmp_path, mqtt_port=0, triage_window_minutes=15)
    engine = init_db(settings.resolved_database_url)
    sessions = session_factory(engine)
    secrets = {}
    with sessions() as session:
        patient = create_patient(session, name="Test Patient", mrn="MRN-1")
        for device_id in ("wear-1", "wear-2"):
            _, secrets[device_id] = register_device(
                session, device_id=device_id, kind="wearable", patient_id=patient.id
            )
        _, secrets["loose-1"] = register_device(session, device_id="loose-1", kind="wearable")
        session.commit()
        patient_id = patient.id
    yield Seeded(sessions, settings, patient_id, secrets)
    engine.dispose()


@pytest.fixture
async def runtime(seeded: Seeded) -> AsyncIterator[IngestRuntime]:
    rt = IngestRuntime(seeded.settings, seeded.sessions, triage_step=False)
    await rt.start()
    yield rt
    await rt.stop()
