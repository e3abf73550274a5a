"""``/api/users``: user administration (admins only)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from iomt.api.deps import AdminDep, SessionDep
from iomt.api.schemas import UserCreate, UserOut, UserUpdate
from iomt.errors import NotFound
from iomt.store import crud

router = APIRouter(prefix="/api/users", tags=["users"])


@router.get("")
def list_users(_: AdminDep, session: SessionDep) -> list[UserOut]:
    """All users."""
    return [UserOut.model_validate(u) for u in crud.list_users(session)]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_user(body: UserCreate, _: AdminDep, session: SessionDep) -> UserOut:
    """Create a user; a patient user names the patient it is."""
    user = crud.create_user(
        session,
        username=body.username,
        password=body.password,
        role=body.role,
        patient_id=body.patient_id,
        full_name=body.full_name,
        email=body.email,
    )
    session.commit()
    return UserOut.model_validate(user)


@router.get("/{user_id}")
def get_user(user_id: int, _: AdminDep, session: SessionDep) -> UserOut:
    """One user."""
    return UserOut.model_validate(crud.get_user(session, user_id=user_id))


@router.patch("/{user_id}")
def update_user(user_id: int, body: UserUpdate, admin: AdminDep, session: SessionDep) -> UserOut:
    """Change password, name, e-mail, or (de)activate a user."""
    try:
        user = crud.get_user(session, user_id=user_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    if body.active is False and user.id == admin.user_id:
        raise HTTPException(status.HTTP_409_CONFLICT, "admins cannot deactivate themselves")
    if body.password is not None:
        crud.set_password(session, user=user, password=body.password)
    if body.active is not None:
        user.active = body.active
    if body.full_name is not None:
        user.full_name = body.full_name
    if body.email is not None:
        user.email = body.email
    session.commit()
    return UserOut.model_validate(user)
