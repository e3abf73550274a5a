"""The dashboard's page routes, one module per area, gathered in one router.

Server-rendered Jinja2 pages; ``static/app.js`` only enhances them (live alert feed over
server-sent events, one-click acknowledge, heatmap opacity, live ward order). Browser
sessions carry the same JWT as the JSON API in an HttpOnly ``SameSite=Strict`` cookie set by
the login form, and every page applies the API's access rules (see
:mod:`iomt.api.pages.session`); each page that shows patient data writes audit rows.
"""

from __future__ import annotations

from fastapi import APIRouter

from iomt.api.pages.routes import admin, alerts, login, patients, studies

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
for _module in (login, patients, studies, alerts, admin):
    router.include_router(_module.router)
