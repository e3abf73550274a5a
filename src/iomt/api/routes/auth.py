"""``/api/auth``: OAuth2 password flow for people, token exchange for devices, ``me``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.security import OAuth2PasswordRequestForm
from starlette.requests import Request

from iomt.api.context import context_of
from iomt.api.deps import PrincipalDep, SessionDep, forbidden, unauthorized
from iomt.api.schemas import Me, Token
from iomt.api.throttle import retry_after_header
from iomt.store import crud

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post("/token")
def login(
    request: Request,
    session: SessionDep,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
) -> Token:
    """Exchange username and password for a short-lived access token.

    Too many failed attempts for the user name (or from the address) give 429 with
    ``Retry-After`` until the window has passed; the password is then not even checked.
    """
    guard = context_of(request).sign_in
    address = request.client.host if request.client else None
    wait = guard.retry_after(form.username, address)
    if wait is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail="too many failed sign-ins; try again later",
            headers=retry_after_header(wait),
        )
    user = crud.authenticate_user(session, username=form.username, password=form.password)
    if user is None:
        guard.failed(form.username, address)
        raise unauthorized("incorrect username or password, or the account is deactivated")
    guard.succeeded(form.username)
    token, lifetime = context_of(request).tokens.issue_for_user(user_id=user.id, role=user.role)
    return Token(access_token=token, expires_in=lifetime)


@router.post("/device-token")
def device_token(request: Request, principal: PrincipalDep) -> Token:
    """Exchange device credentials (HTTP Basic ``device_id:secret``) for an access token.

    Devices that send often should do this once per token lifetime instead of sending the
    secret with every request.
    """
    if not principal.is_device or principal.device_id is None:
        raise forbidden("only devices exchange credentials here; people use /api/auth/token")
    token, lifetime = context_of(request).tokens.issue_for_device(device_id=principal.device_id)
    return Token(access_token=token, expires_in=lifetime)


@router.get("/me")
def me(principal: PrincipalDep) -> Me:
    """Who the token (or the device credentials) belongs to."""
    return Me(
        role=principal.role,
        name=principal.name,
        user_id=principal.user_id,
        device_id=principal.device_id,
        patient_id=principal.patient_id,
    )
