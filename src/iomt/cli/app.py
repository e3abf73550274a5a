"""Root typer app. Each command group lives in its own module and is registered here.

Command modules import heavy libraries (torch, onnxruntime, flwr) inside the command
functions, so ``iomt --help`` and ``iomt info`` stay fast.
"""

from __future__ import annotations

import logging

import typer
from rich.console import Console
from rich.logging import RichHandler

# Command modules (add yours to this import and one registration line below).
from iomt.cli import bench, demo, detect, fl, info, serve, simulate, triage, vision

app = typer.Typer(
    name="iomt",
    help="iomt: Internet-of-Medical-Things platform (triage, imaging AI, alerts, FL).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.command("info")(info.info)
app.add_typer(bench.app, name="bench")
# Command groups registered by the other modules (one line each):
app.command("serve")(serve.serve)
app.add_typer(serve.admin_app, name="admin")
app.add_typer(triage.app, name="triage")
app.add_typer(detect.app, name="detect")
app.add_typer(vision.app, name="vision")
app.command("simulate")(simulate.simulate)
app.add_typer(fl.app, name="fl")
app.command("demo")(demo.demo)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Set up logging once for every command."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        # logs go to stderr: stdout carries command output (e.g. one JSON object for --json)
        handlers=[RichHandler(console=Console(stderr=True), rich_tracebacks=True, show_path=False)],
    )
    # one line per HTTP request from the simulator's client is noise, not progress
    logging.getLogger("httpx").setLevel(logging.WARNING)


def main() -> None:
    """Console-script entry point."""
    app()
