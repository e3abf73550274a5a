"""``iomt bench ...``: benchmarks that report ratios against a baseline measured in the same run."""

from __future__ import annotations

import typer

# Benchmark modules (add yours to this import and one registration line below).
from iomt.cli import bench_detect, bench_ingest, bench_vision, triage

app = typer.Typer(
    help="Benchmarks (speed as ratios against a same-run baseline).", no_args_is_help=True
)
# Benchmarks registered by their modules (one line each):
app.command("detect")(bench_detect.detect)
app.command("triage")(triage.bench)
app.command("vision")(bench_vision.vision)
app.command("ingest")(bench_ingest.ingest)
