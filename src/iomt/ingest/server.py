"""A stand-alone ingest process (broker + ingest service), for benchmarks and fault checks.

``python -m iomt.ingest.server --data-dir DIR [--port P] [--raw] [--ready-file F]`` migrates
the store in ``DIR``, starts the embedded broker and the ingest service (with ``--mqtt-url``
the gateway to an external broker instead; with ``--raw`` a plain broker without storage, for
the raw publish-to-receive rate), writes ``{"port": ..., "pid": ...}`` to the ready file and
runs until SIGTERM/SIGINT. The HTTP side has its own entry point, :mod:`iomt.api.server`
(ingest does not import the API).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from iomt.config import Settings

log = logging.getLogger(__name__)


async def _serve(args: argparse.Namespace) -> None:
    stop = stop_on_signals()
    broker = None
    runtime = None
    if args.raw:
        from iomt.ingest.mqtt_broker import MqttBroker, OpenAccessPolicy

        broker = MqttBroker(OpenAccessPolicy(), host=args.host, port=args.port)
        await broker.start()
        port = broker.port
    else:
        from iomt.ingest.runtime import IngestRuntime
        from iomt.store.db import init_db, session_factory

        settings = Settings(
            data_dir=args.data_dir, mqtt_host=args.host, mqtt_port=args.port, mqtt_url=args.mqtt_url
        )
        engine = init_db(settings.resolved_database_url)
        runtime = IngestRuntime(
            settings,
            session_factory(engine),
            triage_step=not args.no_triage,
            gateway_client_id=args.gateway_client_id,
        )
        await runtime.start()
        port = runtime.mqtt_port or 0
    if args.ready_file:
        write_ready_file(args.ready_file, port)
    log.info("ingest server ready on port %d", port)
    await stop.wait()
    if runtime is not None:
        write_metrics_file(args.metrics_file, runtime.metrics())
        await runtime.stop()
    elif broker is not None:
        await broker.stop()


def stop_on_signals() -> asyncio.Event:
    """An event the running loop sets on SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def write_metrics_file(path: Path | None, metrics: Mapping[str, Any]) -> None:
    """Write the ingest counters as JSON (nothing if no path was given)."""
    if path is not None:
        Path(path).write_text(json.dumps(metrics, default=str))


def server_arguments(prog: str) -> argparse.ArgumentParser:
    """The options every server process of the benchmarks and fault checks takes."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-triage", action="store_true", help="store readings only")
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--metrics-file", type=Path)
    return parser


def run_server(
    serve: Callable[[argparse.Namespace], Coroutine[Any, Any, None]], args: argparse.Namespace
) -> None:
    """Run ``serve(args)`` until it returns (SIGTERM/SIGINT), logging warnings only."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


def write_ready_file(path: Path, port: int) -> None:
    """Atomically write ``{"port": port, "pid": <this process>}`` (the bench waits for it)."""
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps({"port": port, "pid": os.getpid()}))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = server_arguments("python -m iomt.ingest.server")
    parser.add_argument("--raw", action="store_true", help="plain broker, no storage")
    parser.add_argument("--mqtt-url", help="external broker (gateway mode) instead of embedded")
    parser.add_argument("--gateway-client-id", default="iomt-gateway")
    run_server(_serve, parser.parse_args(argv))


if __name__ == "__main__":
    main()
