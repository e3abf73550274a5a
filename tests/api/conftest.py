"""Fixtures of the API tests: a populated app on SQLite (see :mod:`api_helpers`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import World, build_world

from iomt.config import Settings


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    settings = Settings(data_dir=tmp_path / "data", max_upload_bytes=256 * 1024)
    w = build_world(settings)
    with w.client:
        yield w
    w.context.engine.dispose()


@pytest.fixture(params=["direct", "group-commit"])
def gateway_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """The world with device uploads committed per request, and through the ingest runtime."""
    settings = Settings(data_dir=tmp_path / "data", max_upload_bytes=256 * 1024)
    w = build_world(settings, start_ingest=request.param == "group-commit")
    with w.client:
        yield w
    w.context.engine.dispose()
