"""``iomt info``: what this installation is and what it can do."""

from __future__ import annotations

import importlib.util
import json
import platform

import typer
from rich.console import Console
from rich.table import Table

import iomt
from iomt.config import get_settings


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def info(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Show version, settings in force and which optional parts are installed."""
    settings = get_settings()
    facts: dict[str, object] = {
        "version": iomt.__version__,
        "python": platform.python_version(),
        "database_url": settings.resolved_database_url,
        "mqtt": settings.mqtt_url or "embedded broker",
        "data_dir": str(settings.data_dir.resolve()),
        "extras": {
            "vision (torch)": _has("torch"),
            "federated (flwr)": _has("flwr"),
            "onnxruntime": _has("onnxruntime"),
        },
    }
    if as_json:
        typer.echo(json.dumps(facts))
        return
    table = Table(title=f"iomt {iomt.__version__}", show_header=False)
    for key, value in facts.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    Console().print(table)
