"""A stand-alone API process for benchmarks: ``python -m iomt.api.server --data-dir DIR``.

Serves the app the way ``iomt serve`` does (uvicorn, the ingest runtime in the lifespan, so
device uploads go through its group commit; its MQTT broker listens on a free port) on
``--port`` (default: a free one), writes ``{"port": ..., "pid": ...}`` to ``--ready-file``,
and on SIGTERM/SIGINT writes the ingest counters to ``--metrics-file`` and stops.
``iomt bench ingest`` starts it for the HTTP measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket

from iomt.config import Settings
from iomt.ingest.server import (
    run_server,
    server_arguments,
    stop_on_signals,
    write_metrics_file,
    write_ready_file,
)

log = logging.getLogger(__name__)


async def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from iomt.api.app import create_app
    from iomt.api.context import app_context

    stop = stop_on_signals()
    settings = Settings(data_dir=args.data_dir, mqtt_host=args.host, mqtt_port=0)
    app = create_app(settings, start_ingest=True, ingest_triage=not args.no_triage)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))

    async def stopper() -> None:
        await stop.wait()
        runtime = app_context(app).extras.get("ingest")
        if runtime is not None:
            write_metrics_file(args.metrics_file, runtime.metrics())
        server.should_exit = True

    async def announce() -> None:
        while not server.started:
            await asyncio.sleep(0.05)
        port = int(sock.getsockname()[1])
        if args.ready_file:
            write_ready_file(args.ready_file, port)
        log.info("API ready on port %d", port)

    await asyncio.gather(server.serve(sockets=[sock]), stopper(), announce())


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    run_server(_serve, server_arguments("python -m iomt.api.server").parse_args(argv))


if __name__ == "__main__":
    main()
