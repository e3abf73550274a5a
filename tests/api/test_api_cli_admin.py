"""``iomt admin``: bootstrap accounts and devices from the shell."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from iomt.cli.app import app
from iomt.config import get_settings
from iomt.store import crud
from iomt.store.credentials import verify_device_secret
from iomt.store.db import init_db, session_factory


def test_create_user_and_register_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOMT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("IOMT_ADMIN_PASSWORD", "bootstrap-pw")
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        made = runner.invoke(app, ["admin", "create-user", "root"])
        assert made.exit_code == 0, made.output
        again = runner.invoke(app, ["admin", "create-user", "root"])
        assert again.exit_code == 1 and "taken" in again.output
        device = runner.invoke(app, ["admin", "register-device", "band-1"])
        assert device.exit_code == 0, device.output
        secret = device.output.strip().rsplit(" ", 1)[-1]
        engine = init_db(get_settings().resolved_database_url)
        with session_factory(engine)() as session:
            assert crud.authenticate_user(session, username="root", password="bootstrap-pw")
            assert verify_device_secret(session, "band-1", secret) is not None
        engine.dispose()
    finally:
        get_settings.cache_clear()
