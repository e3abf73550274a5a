"""Rendering of the dashboard pages: templates, common context, security headers, refusals."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from sqlalchemy.orm import Session

from iomt.api import deps
from iomt.api.pages import session as web
from iomt.api.pages.charts import LEVEL_STYLES
from iomt.domain.triage import TriageLevel

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

templates = Jinja2Templates(directory=str(TEMPLATES_DIR))

#: Every HTML page: not cached (patient data), not framed, scripts and data from here only.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
#: Roles that see alerts and may acknowledge them (as in the JSON API).
STAFF = ("clinician", "admin")

DbDep = Annotated[Session, Depends(web.db_session)]
UserDep = Annotated[web.PageUser, Depends(web.page_user)]


def _age_text(moment: datetime, now: datetime) -> str:
    """``"3 min ago"`` style text (the exact time is in the element's title)."""
    seconds = max((now - moment).total_seconds(), 0)
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h ago"
    return f"{int(seconds // 86400)} d ago"


def _legend_swatch(level: TriageLevel) -> Markup:
    """A small inline SVG swatch with the level's pattern (same look as the charts)."""
    style = LEVEL_STYLES[level]
    pattern = {
        "dots": f'<circle cx="5" cy="7" r="2" fill="{style.colour}"/>'
        f'<circle cx="15" cy="7" r="2" fill="{style.colour}"/>',
        "diagonal": f'<path d="M0,14 L14,0 M8,14 L22,0" stroke="{style.colour}" stroke-width="2"/>',
        "cross": f'<path d="M0,0 L22,14 M22,0 L0,14" stroke="{style.colour}" stroke-width="2"/>',
    }.get(style.pattern, "")
    return Markup(
        f'<svg viewBox="0 0 22 14" aria-hidden="true"><rect width="22" height="14" '
        f'fill="{style.colour}" fill-opacity="0.25"/>{pattern}</svg>'
    )


templates.env.globals.update(
    age_text=_age_text,
    level_icon=lambda level: LEVEL_STYLES[level].icon,
)

LEGEND = [
    {"swatch": _legend_swatch(level), "letter": style.letter, "label": level.label}
    for level, style in LEVEL_STYLES.items()
]


def render(
    request: Request,
    name: str,
    user: web.PageUser | None,
    db: Session | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render a page with the layout's common context (user, CSRF token, open-alert count)."""
    open_alerts = None
    if user is not None and db is not None and user.role in STAFF:
        open_alerts = web.count_open_alerts(db, user)
    base = {
        "user": user,
        "csrf": web.csrf_token(request),
        "open_alerts": open_alerts,
        "flashes": context.pop("flashes", []),
        "now": datetime.now(UTC),
    }
    response = templates.TemplateResponse(
        request, name, {**base, **context}, status_code=status_code
    )
    response.headers.update(PAGE_HEADERS)
    return response


def denied(
    request: Request, user: web.PageUser | None, db: Session | None, status_code: int = 404
) -> HTMLResponse:
    """A 403 or 404 page that names nothing: not the patient, not whether it exists."""
    heading, message = (
        ("Not allowed", "You may not see this page.")
        if status_code == 403
        else ("Not found", "There is no such page, or you may not see it.")
    )
    return render(
        request,
        "error.html",
        user,
        db,
        status_code=status_code,
        heading=heading,
        message=message,
    )


def forbidden(request: Request, user: web.PageUser, db: Session) -> HTMLResponse:
    """403 for a page the user's role does not have."""
    return render(
        request,
        "error.html",
        user,
        db,
        status_code=403,
        heading="Not allowed",
        message=f"This page is not available to the {user.role} role.",
    )


def audit(request: Request, db: Session, user: web.PageUser, patient_ids: list[int]) -> None:
    """Record that ``user`` read these patients' data through this page (committed)."""
    deps.audit_reads(request, db, user.principal, patient_ids)
