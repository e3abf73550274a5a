"""Smoke path of the API on the real PostgreSQL (a fresh schema per test, dropped after)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from api_helpers import World, basic, build_world, png_bytes
from sqlalchemy import text

from iomt.config import Settings
from iomt.store import crud
from iomt.store.db import make_engine

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_world(tmp_path: Path) -> Iterator[World]:
    schema = f"iomt_api_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"{POSTGRES_URL}?options=-csearch_path%3D{schema}",
    )
    world = build_world(settings)
    try:
        with world.client:
            yield world
    finally:
        world.context.engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.mark.postgres
def test_device_to_clinician_path_on_postgres(pg_world: World) -> None:
    w = pg_world
    created = w.client.post(
        "/api/devices",
        json={"device_id": "pg-wear", "kind": "wearable", "patient_id": w.p1},
        headers=w.headers["admin"],
    )
    assert created.status_code == 201
    device = basic("pg-wear", created.json()["secret"])
    now = datetime.now(UTC).isoformat()
    batch = {"readings": [{"seq": i, "kind": "spo2", "value": 95, "time": now} for i in range(50)]}
    first = w.client.post("/api/devices/pg-wear/readings", json=batch, headers=device)
    second = w.client.post("/api/devices/pg-wear/readings", json=batch, headers=device)
    assert first.json() == {"received": 50, "stored": 50, "duplicates": 0}
    assert second.json() == {"received": 50, "stored": 0, "duplicates": 50}
    study = w.client.post(
        "/api/devices/pg-wear/studies",
        files={"file": ("x.png", png_bytes(60), "image/png")},
        data={"modality": "SM"},
        headers=device,
    )
    assert study.status_code == 201
    readings = w.client.get(f"/api/patients/{w.p1}/readings", headers=w.headers["clin_assigned"])
    assert len(readings.json()) == 50
    denied = w.client.get(f"/api/patients/{w.p1}/readings", headers=w.headers["clin_unassigned"])
    assert denied.status_code == 403
    with w.context.sessions() as s:
        assert any(r.resource.endswith("/readings") for r in crud.list_audit(s, patient_id=w.p1))
