"""``/healthz``: liveness and database reachability (no authentication, no patient data)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from iomt.api.context import context_of

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    """200 with ``{"status": "ok"}`` when the database answers, else 503."""
    context = context_of(request)
    try:
        with context.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return JSONResponse({"status": "error", "database": str(exc)[:200]}, status_code=503)
    return JSONResponse(
        {
            "status": "ok",
            "database": context.engine.dialect.name,
            "image_step": context.image_step.name,
            "triage_step": context.triage_step.name if context.triage_step else None,
        }
    )
