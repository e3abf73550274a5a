"""The simulator over HTTP against the real API app: batch uploads and image uploads."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from ingest_helpers import Seeded

from iomt.ingest.sim_runner import Simulation, provision
from iomt.store.readings import count_readings

IMAGES = Path(__file__).resolve().parents[3] / "shared" / "data" / "chest" / "cxr-covid" / "images"


@pytest.fixture
def api_url(seeded: Seeded) -> Iterator[str]:
    from iomt.api.app import create_app

    app = create_app(seeded.settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "API did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)


async def test_simulated_devices_upload_readings_and_images_over_http(
    seeded: Seeded, api_url: str, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    sources = sorted(IMAGES.glob("*.png"))[:2] if IMAGES.is_dir() else []
    if not sources:
        pytest.skip(f"no images under {IMAGES}")
    for source in sources:
        (images / source.name).write_bytes(source.read_bytes())
    roster = await asyncio.to_thread(provision, seeded.sessions, 2, imagers=1)
    sim = Simulation(
        roster,
        transport="http",
        api_url=api_url,
        speed=600,
        interval_s=10,
        horizon_s=2,
        image_dir=images,
        image_every_s=0.5,
    )
    stats = await asyncio.to_thread(sim.run, 2.0)
    assert stats.errors == [], stats.errors
    assert stats.messages_sent > 10 and stats.messages_acked == stats.messages_sent
    assert stats.images_uploaded >= 2
    with seeded.sessions() as session:
        assert count_readings(session) == stats.readings_sent
