"""Browser sessions and access rules of the dashboard, on top of the API's auth and the store.

The login form issues the same JWT as the API's OAuth2 password flow and keeps it in an
HttpOnly, ``SameSite=Strict`` cookie. Forms carry a CSRF token derived from that cookie
(the SHA-256 of the token: a cross-site page can neither read the cookie nor compute it).
Who may see which patient is decided here exactly as in the JSON API.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from fastapi import HTTPException, Request, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from iomt.api import deps
from iomt.api.context import context_of
from iomt.errors import AuthError
from iomt.store import crud
from iomt.store.credentials import verify_device_secret
from iomt.store.models import Alert, User

COOKIE_NAME = "iomt_session"
#: Patient data must not sit in shared caches.
PRIVATE_CACHE = {"Cache-Control": "private, no-store"}


@dataclass(frozen=True, slots=True)
class PageUser:
    """The signed-in user of a page request."""

    id: int
    username: str
    role: str
    patient_id: int | None
    full_name: str | None

    @property
    def display_name(self) -> str:
        """Full name if known, else the user name."""
        return self.full_name or self.username

    @property
    def principal(self) -> deps.Principal:
        """The same caller as the JSON API sees it (for its access rules and audit)."""
        return deps.Principal(
            role=self.role, name=self.username, user_id=self.id, patient_id=self.patient_id
        )


def _page_user(user: User) -> PageUser:
    return PageUser(
        id=user.id,
        username=user.username,
        role=user.role,
        patient_id=user.patient_id,
        full_name=user.full_name,
    )


# ------------------------------------------------------------------------------ database


def session_factory(request: Request) -> sessionmaker[Session]:
    """The app's session factory (set up by the API's ``create_app``)."""
    return context_of(request).sessions


#: One session per request, closed afterwards: the API's own dependency.
db_session = deps.db_session


# ------------------------------------------------------------------------------- cookies


def _token(request: Request) -> str | None:
    """The session cookie's token."""
    return request.cookies.get(COOKIE_NAME) or None


def _bearer(request: Request) -> str | None:
    """A token sent as ``Authorization: Bearer`` (scripts and API clients, not browsers)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def optional_user(request: Request) -> PageUser | None:
    """The signed-in person: from the session cookie, else from a bearer token.

    None when there is no token, it is bad or expired, it names a device, or the user is
    unknown or deactivated (the API's rule: every request re-reads the user).
    """
    token = _token(request) or _bearer(request)
    if token is None:
        return None
    try:
        user_id = context_of(request).tokens.user_id(token)
    except AuthError:
        return None
    with session_factory(request)() as db:
        user = db.get(User, user_id)
        if user is None or not user.active:
            return None
        return _page_user(user)


def _is_device(request: Request) -> bool:
    """Whether the request carries valid device credentials (Basic or a device token)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value:
        try:
            return context_of(request).tokens.verify(value.strip()).subject_kind == "device"
        except AuthError:
            return False
    if scheme.lower() == "basic" and value:
        try:
            device_id, sep, secret = (
                base64.b64decode(value.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return False
        with session_factory(request)() as db:
            return bool(sep) and verify_device_secret(db, device_id, secret) is not None
    return False


def session_expiry(request: Request) -> datetime | None:
    """When the session cookie's token expires (None without a valid one)."""
    token = _token(request)
    if token is None:
        return None
    try:
        return context_of(request).tokens.verify(token).expires
    except AuthError:
        return None


def page_user(request: Request) -> PageUser:
    """FastAPI dependency: the signed-in person.

    Otherwise a browser (``Accept: text/html``) is sent to the login form; other clients get
    401 as from the JSON API, and devices 403 (they have no pages).
    """
    user = optional_user(request)
    if user is not None:
        return user
    if _is_device(request):
        raise HTTPException(status_code=403, detail="devices have no dashboard pages")
    if "text/html" in request.headers.get("accept", "") and not _bearer(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(
            status_code=303, headers={"Location": f"/login?next={quote(target, safe='')}"}
        )
    raise HTTPException(
        status_code=401,
        detail="not authenticated: log in at /login (or send a bearer token)",
        headers={"WWW-Authenticate": "Bearer"},
    )


def login(db: Session, *, username: str, password: str) -> PageUser | None:
    """Check a user name and password (argon2, constant-ish time); None if wrong."""
    if not username or not password:
        return None
    user = crud.authenticate_user(db, username=username, password=password)
    return _page_user(user) if user is not None else None


def set_session_cookie(request: Request, response: Response, user: PageUser) -> None:
    """Start a session: issue a session token (the API's JWT + ``sid``) into the cookie."""
    token, max_age = context_of(request).tokens.issue_session(user_id=user.id, role=user.role)
    write_session_cookie(response, token, max_age, secure=request.url.scheme == "https")


def write_session_cookie(response: Response, token: str, max_age: int, *, secure: bool) -> None:
    """Store ``token`` in the HttpOnly, ``SameSite=Strict`` session cookie."""
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
    )


def clear_session_cookie(response: Response) -> None:
    """Remove the session cookie."""
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")


def csrf_token(request: Request) -> str:
    """The CSRF token of this browser session (empty without a valid session).

    Derived from the session id, which stays the same when the token is renewed, so a form
    opened before a renewal still submits.
    """
    token = _token(request)
    if not token:
        return ""
    try:
        claims = context_of(request).tokens.verify(token)
    except AuthError:
        return ""
    basis = claims.session_id or token
    return hashlib.sha256(basis.encode()).hexdigest()[:32]


def csrf_ok(request: Request, submitted: str) -> bool:
    """Whether a form's CSRF token belongs to this session (and the origin is ours).

    A request authenticated only by an ``Authorization`` header carries no ambient
    credential a foreign page could ride on, so it needs no CSRF token.
    """
    if _token(request) is None and _bearer(request) is not None:
        return True
    origin = request.headers.get("origin")
    if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
        return False
    expected = csrf_token(request)
    return bool(expected) and hmac.compare_digest(expected, submitted)


def safe_next(target: str) -> str:
    """A post-login redirect target, only if it is a local path (no open redirect)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return ""


def home_for(user: PageUser) -> str:
    """The start page of a role."""
    return {"admin": "/admin", "clinician": "/ward", "patient": "/me"}.get(user.role, "/login")


# ------------------------------------------------------------------------------- access


def visible_patient_ids(db: Session, user: PageUser) -> list[int] | None:
    """Patients the user may see (the API's rule): None means all (admin)."""
    return deps.visible_patient_ids(db, user.principal)


def patient_access(db: Session, user: PageUser, patient_id: int) -> int:
    """HTTP status of reading this patient's data: 200, 403 or 404 (the API's rule).

    The API answers 403 to a clinician or patient for any patient that is not theirs,
    whether it exists or not, so the status never reveals that a patient exists.
    """
    try:
        deps.check_patient_access(db, user.principal, patient_id)
    except HTTPException as exc:
        return exc.status_code
    return 200


def may_read_patient(db: Session, user: PageUser, patient_id: int) -> bool:
    """Whether the user may read this patient's data."""
    return patient_access(db, user, patient_id) == 200


def count_open_alerts(db: Session, user: PageUser) -> int:
    """Open alerts of the patients the user sees (for the navigation badge)."""
    ids = visible_patient_ids(db, user)
    query = select(func.count()).select_from(Alert).where(Alert.acknowledged_at.is_(None))
    if ids is not None:
        query = query.where(Alert.patient_id.in_(ids))
    return int(db.scalar(query) or 0)
