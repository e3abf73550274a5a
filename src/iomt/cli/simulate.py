"""``iomt simulate``: virtual patients with wearables (and imaging devices) sending data."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from iomt.config import get_settings

log = logging.getLogger(__name__)


def simulate(
    patients: int = typer.Option(5, "--patients", "-n", min=1, help="Virtual patients."),
    transport: str = typer.Option("mqtt", help="mqtt or http."),
    mqtt_host: str = typer.Option("127.0.0.1", help="Broker host (embedded or Mosquitto)."),
    mqtt_port: int = typer.Option(1883, help="Broker port (the embedded one prints its port)."),
    api_url: str = typer.Option(
        "http://127.0.0.1:8000", help="API base URL (HTTP transport, images)."
    ),
    speed: float = typer.Option(1.0, min=1.0, help="Simulated seconds per real second."),
    interval: float = typer.Option(5.0, min=0.01, help="Simulated seconds between samples."),
    duration: float = typer.Option(60.0, help="Real seconds to run (0: until Ctrl-C)."),
    roster: Path | None = typer.Option(
        None, help="JSON file with device credentials; default: register devices in the store."
    ),
    images: Path | None = typer.Option(None, help="Folder of images the imaging device uploads."),
    image_every: float = typer.Option(10.0, help="Real seconds between image uploads."),
    image_modality: str = typer.Option("CR", help="Modality of the uploaded images."),
    image_task: str | None = typer.Option(None, help="Model task hint, e.g. chest/cxr-covid."),
    seed: int = typer.Option(0, help="Random seed (courses, noise, dropouts)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Run N virtual patients whose vitals stay well, deteriorate or recover, over MQTT or HTTP."""
    from iomt.ingest.sim_runner import Roster, Simulation, provision

    settings = get_settings()
    if roster is not None:
        cast = Roster.from_json(roster.read_text())
    else:
        from iomt.store.db import init_db, session_factory

        engine = init_db(settings.resolved_database_url)
        cast = provision(session_factory(engine), patients, imagers=1 if images else 0)
        engine.dispose()
        path = settings.data_dir / "sim-roster.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(cast.to_json())
        path.chmod(0o600)
        log.info("registered %d virtual devices; credentials in %s", len(cast.wearables), path)
    simulation = Simulation(
        cast,
        transport=transport,
        mqtt_host=mqtt_host,
        mqtt_port=mqtt_port,
        api_url=api_url,
        speed=speed,
        interval_s=interval,
        horizon_s=duration if duration > 0 else 3600.0,
        seed=seed,
        image_dir=images,
        image_every_s=image_every,
        image_modality=image_modality,
        image_task=image_task,
    )
    log.info("courses: %s", simulation.courses())
    try:
        stats = simulation.run(duration if duration > 0 else None)
    except KeyboardInterrupt:
        simulation.stop_event.set()
        stats = simulation.stats
    summary = {**stats.as_dict(), "courses": simulation.courses(), "transport": transport}
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        for key, value in summary.items():
            typer.echo(f"{key}: {value}")
