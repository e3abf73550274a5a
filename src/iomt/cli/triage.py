"""``iomt triage ...``: the FLCD triage engine's evaluation, benchmark and one-off verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="FLCD fuzzy triage: evaluate, bench, assess.", no_args_is_help=True)


@app.command("evaluate")
def evaluate(
    n: int = typer.Option(5000, help="Synthetic windows to generate."),
    seed: int = typer.Option(0, help="Seed of the generator and the folds."),
    folds: int = typer.Option(10, help="Cross-validation folds."),
    n_boot: int = typer.Option(500, "--boot", help="Bootstrap resamples for F1/AUC CIs."),
    out: Path = typer.Option(Path("reports/triage"), help="Directory for JSON, markdown, plots."),
    noise_free: bool = typer.Option(
        False, "--noise-free", help="Use the true values (the paper's protocol), no sensors."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """10-fold CV of FLCD (t1, t2), NEWS2-partial and the paper's baselines on generated data."""
    from rich.console import Console
    from rich.progress import Progress

    from iomt.triage.evaluate import model_zoo, run_evaluation, write_outputs

    console = Console(stderr=True)
    total = len(model_zoo([], seed))
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("cross-validating", total=total)
        result = run_evaluation(
            n,
            seed=seed,
            folds=folds,
            n_boot=n_boot,
            noise_free=noise_free,
            progress=lambda name: progress.update(task, advance=1, description=name),
        )
    files = write_outputs(result, out)
    if as_json:
        typer.echo(json.dumps(result, default=float))
        return
    console.print(result["table_markdown"])
    console.print("written: " + ", ".join(str(f) for f in files))


@app.command("bench")
def bench(
    n: int = typer.Option(100_000, help="Windows per vectorised measurement."),
    samples: int = typer.Option(3, help="scikit-fuzzy windows (each takes seconds)."),
    build_timeout: float = typer.Option(
        120.0, help="Seconds allowed for scikit-fuzzy's stock build."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Windows/s of the vectorised engine (t1, t2) vs scikit-fuzzy on the same 512 rules."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from iomt.triage.bench import run_bench

    console = Console(stderr=True)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("bench", total=5)
        result = run_bench(
            n=n,
            skfuzzy_samples=samples,
            build_timeout_s=build_timeout,
            step=lambda msg: progress.update(task, advance=1, description=msg),
        )
    if as_json:
        typer.echo(json.dumps(result, default=float))
        return
    table = Table(
        title=f"FLCD engine, {result['rules']} rules, 1 thread, "
        f"load {result['load_average_1min']:.1f} on {result['cpu_count']} CPUs"
    )
    table.add_column("engine")
    table.add_column("windows/s", justify="right")
    table.add_column("windows/CPU-s", justify="right")
    table.add_column("x scikit-fuzzy", justify="right")
    for name, speed in result["windows_per_s"].items():
        cpu = result["windows_per_cpu_s"][name]
        table.add_row(
            name, f"{speed:,.1f}", f"{cpu:,.1f}", f"{result['speedup_vs_skfuzzy'][name]:,.0f}"
        )
    Console().print(table)
    build = result["skfuzzy_stock_build"]
    stock = f"{build['seconds']:.1f} s" if build["finished"] else f"> {build['timeout_s']:.0f} s"
    Console().print(
        f"scikit-fuzzy stock build: {stock}; composed build "
        f"{result['skfuzzy_composed_build_s']:.2f} s; our engine build "
        f"{result['engine_build_s'] * 1000:.1f} ms; max |ours - skfuzzy| = "
        f"{result['max_abs_diff_vs_skfuzzy']:.2e}"
    )


@app.command("assess")
def assess(
    temperature: float = typer.Option(..., help="degF (window mode)"),
    resp_rate: float = typer.Option(..., help="/min (window median)"),
    heart_rate: float = typer.Option(..., help="/min (window mean)"),
    spo2: float = typer.Option(..., help="% (window mean)"),
    contact: bool = typer.Option(False, help="Any contact under 6 ft in the window."),
    kind: str = typer.Option("t1", help="t1 or t2"),
) -> None:
    """Verdict and explanation for one window's aggregates (published parameters)."""
    import numpy as np

    from iomt.triage.classifier import FLCDClassifier

    clf = FLCDClassifier(type="t2" if kind == "t2" else "t1")
    x = np.array([[temperature, resp_rate, heart_rate, spo2, float(contact)]])
    typer.echo(json.dumps(clf.explain(x)[0], indent=1))
