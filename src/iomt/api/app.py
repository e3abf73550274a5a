"""The FastAPI application factory.

``create_app(settings)`` builds the whole HTTP side: JSON API, FHIR, health, error mapping and
the upload size limit. Analysis plugs in through the two steps of
:mod:`iomt.domain.analysis`: the image step runs on every new study (default: the registered
ONNX models, or the built-in image-quality rule when no model is registered); the triage step
goes to the ingest runtime, which the app starts in its lifespan when ``start_ingest`` is set
(``iomt serve`` does).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from iomt.alerts.dispatch import AlertDispatcher, dispatcher_from_settings
from iomt.alerts.feed import AlertFeed
from iomt.api.context import AppContext, app_context
from iomt.api.pages import mount_pages
from iomt.api.routes import admin, alerts, auth, devices, fhir, health, patients, uploads, users
from iomt.api.security import TokenService, load_or_create_secret
from iomt.api.services.images import ImageStore
from iomt.api.services.imaging import resume_pending
from iomt.api.throttle import SignInGuard
from iomt.config import Settings
from iomt.domain.analysis import ImageAnalysisStep, TriageStep
from iomt.errors import AuthError, IomtError, NotFound, PermissionDenied, ValidationError
from iomt.store.db import init_db, session_factory

log = logging.getLogger(__name__)

#: Room for multipart framing and form fields on top of ``max_upload_bytes``.
FORM_OVERHEAD_BYTES = 64 * 1024


def default_image_step(settings: Settings) -> ImageAnalysisStep:
    """The registered ONNX models, or the built-in image-quality rule if none is registered."""
    from iomt.inference.builtin import ImageQualityCheck

    try:
        from iomt.inference.registry import ModelRegistry
        from iomt.inference.step import OnnxImageAnalysis

        registry = ModelRegistry.from_settings(settings)
    except Exception as exc:  # no onnxruntime, unreadable registry: say so, keep serving
        log.warning("model registry unavailable (%s); using the built-in image-quality rule", exc)
        return ImageQualityCheck()
    if len(registry) == 0:
        log.info("no model registered; using the built-in image-quality rule")
        return ImageQualityCheck()
    return OnnxImageAnalysis(registry)


class BodySizeLimit:
    """Refuse request bodies over ``limit`` bytes with 413 before they are parsed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send, int(declared))
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await self._refuse(send, seen)

    async def _refuse(self, send: Send, size: int) -> None:
        response = JSONResponse(
            {"detail": f"request body of {size}+ bytes exceeds the limit of {self.limit} bytes"},
            status_code=413,
        )
        await response({"type": "http"}, _no_receive, send)


class _TooLarge(Exception):
    pass


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


_STATUS: dict[type[IomtError], int] = {
    ValidationError: 422,
    NotFound: 404,
    PermissionDenied: 403,
    AuthError: 401,
}


def _error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IomtError)
    status = next((code for cls, code in _STATUS.items() if isinstance(exc, cls)), 400)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)


def create_app(
    settings: Settings,
    *,
    triage_step: TriageStep | None = None,
    image_step: ImageAnalysisStep | None = None,
    engine: Engine | None = None,
    alert_feed: AlertFeed | None = None,
    dispatcher: AlertDispatcher | None = None,
    start_ingest: bool = False,
    ingest_triage: bool = True,
) -> FastAPI:
    """Build the iomt API.

    Parameters
    ----------
    settings
        Database URL, data dir, token lifetime, upload limit, ...
    triage_step
        Handed to the ingest runtime (``start_ingest``); None: its built-in rule.
    image_step
        Runs on each new study; None: registered ONNX models, else the built-in rule.
    engine
        An engine to use instead of migrating ``settings.resolved_database_url`` here.
    alert_feed, dispatcher
        Live feed and alert dispatcher to share with other parts of the process; None: a
        dispatcher with the channels the settings configure (webhook, e-mail).
    start_ingest
        Start the ingest runtime (MQTT broker or gateway, triage scheduler) with the app;
        device reading uploads then go through its group commit.
    ingest_triage
        Run the triage scheduler in the ingest runtime (off: store readings only, as the
        ingest benchmark does).
    """
    engine = engine or init_db(settings.resolved_database_url)
    sessions = session_factory(engine)
    feed = alert_feed or AlertFeed()
    context = AppContext(
        settings=settings,
        engine=engine,
        sessions=sessions,
        tokens=TokenService(load_or_create_secret(settings), minutes=settings.access_token_minutes),
        images=ImageStore(Path(settings.data_dir) / "images"),
        image_step=image_step or default_image_step(settings),
        triage_step=triage_step,
        alert_feed=feed,
        alerts=dispatcher or dispatcher_from_settings(settings, sessions, feed=feed),
        sign_in=SignInGuard(
            settings.login_max_failures,
            settings.login_max_failures_per_address,
            settings.login_lock_seconds,
        ),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _start(app_context(app), start_ingest, triage=ingest_triage)
        try:
            yield
        finally:
            await _stop(app_context(app))

    app = FastAPI(
        title="iomt",
        version="0.1.0",
        summary="Internet-of-Medical-Things platform: devices, triage, imaging AI, alerts",
        lifespan=lifespan,
    )
    app.state.iomt = context
    app.add_exception_handler(IomtError, _error_handler)
    for router in (
        health.router,
        auth.router,
        users.router,
        patients.router,
        devices.router,
        uploads.router,
        alerts.router,
        admin.router,
        fhir.router,
    ):
        app.include_router(router)
    mount_pages(app)  # the dashboard's HTML pages (iomt.api.pages)
    app.add_middleware(BodySizeLimit, limit=settings.max_upload_bytes + FORM_OVERHEAD_BYTES)
    return app


async def _start(context: AppContext, start_ingest: bool, *, triage: bool = True) -> None:
    await context.alerts.start()
    loop = asyncio.get_running_loop()
    context.extras["resume"] = loop.run_in_executor(
        None,
        functools.partial(
            resume_pending,
            context.sessions,
            context.images,
            context.image_step,
            dispatcher=context.alerts,
            loop=loop,
            on_done=list(context.on_findings),
        ),
    )
    if not start_ingest:
        return
    from iomt.ingest.runtime import IngestRuntime

    runtime = IngestRuntime(
        context.settings,
        context.sessions,
        triage_step=context.triage_step if triage else False,
        alerts=context.alerts,
    )
    await runtime.start()
    # HTTP and FHIR uploads now go through runtime.service (iomt.api.routes.uploads), whose
    # commit hooks feed the triage scheduler as MQTT readings do.
    context.extras["ingest"] = runtime
    log.info("ingest runtime started (MQTT port %s)", runtime.mqtt_port)


async def _stop(context: AppContext) -> None:
    resume = context.extras.pop("resume", None)
    if resume is not None:
        await resume
    runtime: Any = context.extras.pop("ingest", None)
    if runtime is not None:
        await runtime.stop()
    await context.alerts.stop()
