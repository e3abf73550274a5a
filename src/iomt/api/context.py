"""What the running app holds: settings, database, tokens, image store, analysis steps, hooks.

One :class:`AppContext` lives in ``app.state.iomt``; routes and the dashboard reach it with
:func:`context_of`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from iomt.alerts.dispatch import AlertDispatcher
from iomt.alerts.feed import AlertFeed
from iomt.api.security import TokenService
from iomt.api.services.images import ImageStore
from iomt.api.throttle import SignInGuard
from iomt.config import Settings
from iomt.domain.analysis import ImageAnalysisStep, TriageStep

#: Called after readings from HTTP or FHIR were committed: ``{patient_id: newest time}``.
ReadingsHook = Callable[[Mapping[int, datetime]], None]
#: Called (in a worker thread) after a study's findings were committed: ``study_id``.
FindingsHook = Callable[[int], None]


@dataclass
class AppContext:
    """Everything the routes share.

    Attributes
    ----------
    on_readings
        Hooks run after device readings that arrived over HTTP or FHIR were committed by the
        request itself (no ingest runtime in the process). With the runtime, uploads are
        committed by its ingest service, whose ``on_commit`` hooks (triage) run instead.
    alerts
        Stores alerts for positive findings, feeds them live and delivers them.
    on_findings
        Hooks run after an uploaded study was analysed.
    sign_in
        Failed sign-in counts (API token endpoint and dashboard login share them).
    """

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    tokens: TokenService
    images: ImageStore
    image_step: ImageAnalysisStep
    triage_step: TriageStep | None
    alert_feed: AlertFeed
    alerts: AlertDispatcher
    sign_in: SignInGuard = field(default_factory=SignInGuard)
    on_readings: list[ReadingsHook] = field(default_factory=list)
    on_findings: list[FindingsHook] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)


def context_of(request: Request) -> AppContext:
    """The context of the app serving ``request``."""
    return app_context(request.app)


def app_context(app: FastAPI) -> AppContext:
    """The context of ``app`` (set by :func:`iomt.api.app.create_app`)."""
    context = app.state.iomt
    assert isinstance(context, AppContext)
    return context
