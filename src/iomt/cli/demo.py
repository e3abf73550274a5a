"""``iomt demo``: the whole platform on embedded defaults, with simulated patients.

One process runs the API and dashboard (uvicorn), the embedded MQTT broker, the ingest
service and the FLCD triage; simulated wearables publish over MQTT and a simulated imaging
device uploads real chest X-rays from ``../shared/data`` when they are there. With
``--duration S`` it stops after S seconds and prints what the platform did.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import typer

from iomt.config import Settings, get_settings

log = logging.getLogger(__name__)

#: Where a checkout of this repository finds the shared datasets (the repo's sibling).
_SHARED_IMAGES = (
    "../shared/data/chest/cxr-covid/images",
    "../../shared/data/chest/cxr-covid/images",
)


def _default_images() -> Path | None:
    for candidate in _SHARED_IMAGES:
        path = Path(candidate)
        if path.is_dir():
            return path
    return None


def _ensure_user(sessions: Any, username: str, role: str) -> tuple[int, str | None]:
    """Create ``username`` with a fresh password unless it exists; return (id, new password)."""
    from iomt.store import crud

    with sessions() as session:
        user = crud.get_user_by_username(session, username=username)
        if user is not None:
            return int(user.id), None
        password = secrets.token_urlsafe(12)
        user = crud.create_user(session, username=username, password=password, role=role)
        session.commit()
        return int(user.id), password


def _summary(sessions: Any, elapsed_s: float, sim: dict[str, Any]) -> dict[str, Any]:
    """Counts of what the platform stored during the demo, read back from the database."""
    from sqlalchemy import func, select

    from iomt.store import models

    def count(model: Any, *where: Any) -> int:
        with sessions() as session:
            return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    with sessions() as session:
        levels = dict(
            session.execute(
                select(models.VerdictRow.level, func.count()).group_by(models.VerdictRow.level)
            ).all()
        )
    return {
        "seconds": round(elapsed_s, 1),
        "readings_sent": sim.get("readings_sent", 0),
        "readings_stored": count(models.ReadingRow),
        "verdicts": count(models.VerdictRow),
        "verdicts_by_level": {str(k): int(v) for k, v in levels.items()},
        "alerts": count(models.Alert),
        "studies": count(models.Study),
        "findings": count(models.Finding),
        "dead_letters": count(models.DeadLetter),
    }


def _start_server(settings: Settings, app: Any, port: int) -> tuple[Any, threading.Thread]:
    import uvicorn

    config = uvicorn.Config(
        app, host=settings.api_host, port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="iomt-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            log.error("the API server did not start on %s:%s", settings.api_host, port)
            raise typer.Exit(1)
        time.sleep(0.05)
    return server, thread


def demo(
    duration: float = typer.Option(0.0, help="Stop after this many seconds (0: until Ctrl-C)."),
    patients: int = typer.Option(8, "--patients", "-n", min=1, help="Simulated patients."),
    port: int = typer.Option(8000, help="API/dashboard port (0: a free one)."),
    speed: float = typer.Option(
        60.0, min=1.0, help="Simulated seconds per real second (60: a 15-min window every 15 s)."
    ),
    images: Path | None = typer.Option(
        None, help="Folder of images the simulated X-ray device uploads (default: shared data)."
    ),
    data_dir: Path | None = typer.Option(None, help="Data dir (default: $IOMT_DATA_DIR or .iomt)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Run everything on embedded defaults with simulated patients; print the URL and login."""
    from rich.console import Console
    from rich.table import Table

    from iomt.api.app import create_app
    from iomt.ingest.sim_runner import Simulation, provision
    from iomt.store import crud
    from iomt.store.db import init_db, session_factory
    from iomt.triage.step import default_triage_step

    settings = get_settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True)
    engine = init_db(settings.resolved_database_url)
    sessions = session_factory(engine)

    _, admin_password = _ensure_user(sessions, "admin", "admin")
    clinician_id, clinician_password = _ensure_user(sessions, "clinician", "clinician")
    image_dir = images or _default_images()
    roster = provision(sessions, patients, imagers=1 if image_dir else 0)
    with sessions() as session:
        for device in roster.wearables:
            crud.assign_clinician(session, clinician_id=clinician_id, patient_id=device.patient_id)
        session.commit()

    app = create_app(settings, engine=engine, triage_step=default_triage_step(), start_ingest=True)
    server, thread = _start_server(settings, app, port)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    runtime = app.state.iomt.extras["ingest"]
    url = f"http://{settings.api_host}:{bound_port}/"
    console.print(f"[bold]iomt demo[/] dashboard: {url}  (MQTT broker on port {runtime.mqtt_port})")
    for name, password in (("admin", admin_password), ("clinician", clinician_password)):
        shown = password or "(unchanged: set earlier in this data dir)"
        console.print(f"  login [bold]{name}[/] / {shown}")
    if image_dir is None:
        console.print("  no image folder found: imaging uploads are off (use --images DIR)")

    simulation = Simulation(
        roster,
        transport="mqtt",
        mqtt_host=settings.mqtt_host,
        mqtt_port=runtime.mqtt_port,
        api_url=url.rstrip("/"),
        speed=speed,
        interval_s=30.0,
        horizon_s=duration if duration > 0 else 3600.0,
        image_dir=image_dir,
        image_every_s=max(2.0, duration / 6) if duration > 0 else 20.0,
        image_modality="CR",
        image_task="chest/cxr-covid",
    )
    started = time.monotonic()
    try:
        stats = simulation.run(duration if duration > 0 else None)
    except KeyboardInterrupt:
        simulation.stop_event.set()
        stats = simulation.stats
    time.sleep(1.0)  # let the last commits and image analyses land
    summary = _summary(sessions, time.monotonic() - started, stats.as_dict())
    summary["url"] = url
    server.should_exit = True
    thread.join(timeout=30)
    engine.dispose()

    if as_json:
        typer.echo(json.dumps(summary))
        return
    table = Table(title="iomt demo summary", show_header=False)
    for key, value in summary.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    Console().print(table)
