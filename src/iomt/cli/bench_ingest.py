"""``iomt bench ingest``: readings/s stored end to end over MQTT and HTTP vs the raw broker."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def ingest(
    devices: int = typer.Option(8, help="Simulated devices."),
    batch: int = typer.Option(50, help="Readings per message."),
    readings: int = typer.Option(300_000, help="Readings per MQTT measurement (raw, mqtt)."),
    http_readings: int = typer.Option(60_000, help="Readings in the HTTP measurement."),
    inflight: int | None = typer.Option(
        None, help="Unacknowledged messages per device at most (default max(4, 400 // batch))."
    ),
    publishers: int = typer.Option(2, help="Publisher processes."),
    transports: str = typer.Option("raw,mqtt,http", help="Comma-separated: raw, mqtt, http."),
    data_dir: Path | None = typer.Option(None, help="Where the bench databases go (default: tmp)."),
    profile: bool = typer.Option(False, help="Sample the server with py-spy (top functions)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Publish readings from simulated devices; report stored readings/s, latency, loss."""
    from iomt.ingest.bench import BenchConfig, run_bench

    cfg = BenchConfig(
        devices=devices,
        batch=batch,
        readings=readings,
        http_readings=http_readings,
        inflight=inflight,
        publishers=publishers,
        transports=tuple(t.strip() for t in transports.split(",") if t.strip()),
        data_dir=data_dir,
        profile=profile,
    )
    report = run_bench(cfg)
    if as_json:
        typer.echo(json.dumps(report))
        return
    for name in ("raw", "mqtt", "http"):
        if name in report:
            row = report[name]
            typer.echo(
                f"{name:5s} {row['readings_per_s']:>10,.0f} readings/s acked"
                + (
                    f", {row['receive_readings_per_s']:,.0f} readings/s received"
                    if name == "raw"
                    else ""
                )
                + f"  p50 {row['latency_p50_ms']} ms  p99 {row['latency_p99_ms']} ms"
                + (f"  lost {row['lost']} duplicated {row['duplicated']}" if "lost" in row else "")
            )
    if "mqtt_vs_raw" in report:
        typer.echo(f"mqtt / raw broker rate: {report['mqtt_vs_raw']}")
