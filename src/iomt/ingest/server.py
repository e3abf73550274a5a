"""A stand-alone ingest process (broker + ingest service), for benchmarks and fault checks.

``python -m iomt.ingest.server --data-dir DIR [--port P] [--raw] [--ready-file F]`` migrates
the store in ``DIR``, starts the embedded broker and the ingest service (with ``--mqtt-url``
the gateway to an external broker instead; with ``--raw`` a plain broker without storage, for
the raw publish-to-receive rate; with ``--api`` the HTTP API as ``iomt serve`` runs it: with
the :class:`~iomt.ingest.runtime.IngestRuntime` in its lifespan, whose group commit stores the
HTTP uploads; its MQTT broker listens on a free port), writes ``{"port": ..., "pid": ...}``
(the HTTP port with ``--api``) to the ready file and runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

from iomt.config import Settings

log = logging.getLogger(__name__)


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    api_task: asyncio.Future[Any] | None = None
    broker = None
    runtime = None
    if args.api:
        port, api_task = await _serve_api(args, stop)
    elif args.raw:
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
        tmp = Path(str(args.ready_file) + ".tmp")
        tmp.write_text(json.dumps({"port": port, "pid": os.getpid()}))
        tmp.replace(args.ready_file)
    log.info("ingest server ready on port %d", port)
    await stop.wait()
    if runtime is not None:
        if args.metrics_file:
            Path(args.metrics_file).write_text(json.dumps(runtime.metrics(), default=str))
        await runtime.stop()
    elif broker is not None:
        await broker.stop()
    if api_task is not None:
        await api_task


async def _serve_api(
    args: argparse.Namespace, stop: asyncio.Event
) -> tuple[int, asyncio.Future[Any]]:
    """Serve the FastAPI app (HTTP uploads, no MQTT) on a free port until ``stop``."""
    import socket

    import uvicorn

    from iomt.api.app import create_app
    from iomt.api.context import app_context

    settings = Settings(data_dir=args.data_dir, mqtt_host=args.host, mqtt_port=0)
    app = create_app(settings, start_ingest=True, ingest_triage=not args.no_triage)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))

    async def run() -> None:
        await server.serve(sockets=[sock])

    async def stopper() -> None:
        await stop.wait()
        runtime = app_context(app).extras.get("ingest")
        if args.metrics_file and runtime is not None:
            Path(args.metrics_file).write_text(json.dumps(runtime.metrics(), default=str))
        server.should_exit = True

    task = asyncio.gather(run(), stopper())
    while not server.started:
        await asyncio.sleep(0.05)
    return int(sock.getsockname()[1]), task


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m iomt.ingest.server")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--raw", action="store_true", help="plain broker, no storage")
    parser.add_argument(
        "--api", action="store_true", help="HTTP API (uvicorn) with the ingest runtime"
    )
    parser.add_argument("--no-triage", action="store_true")
    parser.add_argument("--mqtt-url", help="external broker (gateway mode) instead of embedded")
    parser.add_argument("--gateway-client-id", default="iomt-gateway")
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--metrics-file", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
