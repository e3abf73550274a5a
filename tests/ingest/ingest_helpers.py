"""Helpers shared by the ingest tests (imported by name; tests/ingest is on sys.path)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from iomt.config import Settings


@dataclass
class Seeded:
    """A store with one patient, two bound wearables and one unbound device."""

    sessions: sessionmaker[Session]
    settings: Settings
    patient_id: int
    secrets: dict[str, str]


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
