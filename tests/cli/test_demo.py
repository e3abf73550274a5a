"""``iomt demo`` runs the whole spine on embedded defaults and reports what it stored."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_stores_every_reading_and_closes_windows(tmp_path: Path) -> None:
    env = {**os.environ, "IOMT_DATA_DIR": str(tmp_path / "data")}
    env.pop("IOMT_DATABASE_URL", None)
    env.pop("IOMT_MQTT_URL", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "iomt.cli",
            "demo",
            "--duration",
            "6",
            "--port",
            "0",
            "--patients",
            "4",
            "--speed",
            "900",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["readings_sent"] > 0
    assert summary["readings_stored"] == summary["readings_sent"]
    assert summary["verdicts"] >= 4  # at least one closed window per patient
    assert summary["dead_letters"] == 0
    assert (tmp_path / "data" / "iomt.db").exists()
