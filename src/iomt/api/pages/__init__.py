"""The dashboard: server-rendered HTML pages served by the iomt app.

:func:`mount_pages` adds the page routes and the vendored static files (CSS, JS) to an app
built by :func:`iomt.api.app.create_app`.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from iomt.api.pages.rendering import STATIC_DIR
from iomt.api.pages.routes import router

__all__ = ["mount_pages"]


def mount_pages(app: FastAPI) -> None:
    """Serve the dashboard pages and their static files from ``app``."""
    app.mount("/static/pages", StaticFiles(directory=STATIC_DIR), name="pages-static")
    app.include_router(router)
