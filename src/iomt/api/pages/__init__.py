"""The dashboard: server-rendered HTML pages served by the iomt app.

:func:`mount_pages` adds the page routes and the vendored static files (CSS, JS) to an app
built by :func:`iomt.api.app.create_app` (one line there). Where things live:

- ``routes/``: one router module per area (login, patients, studies, alerts, admin);
- ``session.py``: session cookie (the API's JWT), CSRF, access rules (the API's own);
- ``renewal.py``: renews an active session's cookie (up to ``session_max_hours``);
- ``actions.py``: the changes pages make, each audited;
- ``ward.py``, ``patient.py``, ``verdicts.py``, ``imaging.py``, ``feed.py``, ``admin.py``:
  what each page shows, read from the store and shaped as frozen dataclasses;
- ``charts.py``: inline SVG vital charts; ``overlay.py``: the colourised heatmap;
- ``rendering.py``: templates, security headers, 403/404 pages;
- ``templates/``, ``static/``: Jinja2 templates, hand-written CSS and a small script that
  only enhances the pages (live alert feed, one-click acknowledge, heatmap opacity).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from iomt.api.pages.rendering import STATIC_DIR
from iomt.api.pages.renewal import SessionRenewal
from iomt.api.pages.routes import router

__all__ = ["mount_pages"]


def mount_pages(app: FastAPI) -> None:
    """Serve the dashboard pages and their static files from ``app``."""
    app.add_middleware(SessionRenewal)
    app.mount("/static/pages", StaticFiles(directory=STATIC_DIR), name="pages-static")
    app.include_router(router)
