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
import contextlib
import json
import logging
import signal
import socket
from pathlib import Path

from iomt.config import Settings

log = logging.getLogger(__name__)


async def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from iomt.api.app import create_app
    from iomt.api.context import app_context
    from iomt.ingest.server import write_ready_file

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    settings = Settings(data_dir=args.data_dir, mqtt_host=args.host, mqtt_port=0)
    app = create_app(settings, start_ingest=True, ingest_triage=not args.no_triage)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))

    async def stopper() -> None:
        await stop.wait()
        runtime = app_context(app).extras.get("ingest")
        if args.metrics_file and runtime is not None:
            Path(args.metrics_file).write_text(json.dumps(runtime.metrics(), default=str))
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
    parser = argparse.ArgumentParser(prog="python -m iomt.api.server")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-triage", action="store_true", help="store readings only")
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--metrics-file", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
