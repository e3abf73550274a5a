"""``iomt bench ...``: benchmarks that report ratios against a baseline measured in the same run."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Benchmarks (speed as ratios against a same-run baseline).", no_args_is_help=True
)
# Benchmarks registered by their modules (one line each):
app.command("detect")(__import__("iomt.cli.bench_detect", fromlist=["detect"]).detect)
app.command("triage")(__import__("iomt.cli.triage", fromlist=["bench"]).bench)
app.command("vision")(__import__("iomt.cli.bench_vision").cli.bench_vision.vision)
app.command("ingest")(__import__("iomt.cli.bench_ingest").cli.bench_ingest.ingest)
