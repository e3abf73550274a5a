"""``iomt serve`` (API, dashboard, device gateway and triage in one process) and
``iomt admin ...`` (bootstrap accounts and devices from the shell)."""

from __future__ import annotations

import logging
import os
from typing import Any

import typer

from iomt.config import get_settings

log = logging.getLogger(__name__)

admin_app = typer.Typer(help="Accounts and devices, from the shell.", no_args_is_help=True)

PASSWORD_ENV = "IOMT_ADMIN_PASSWORD"


def _triage_step(name: str) -> Any:
    """The triage step named on the command line."""
    if name == "builtin":
        from iomt.ingest.builtin_triage import ThresholdTriage

        return ThresholdTriage()
    if name == "flcd":
        from iomt.triage.step import FLCDTriageStep

        return FLCDTriageStep()
    raise typer.BadParameter(f"unknown triage step {name!r}; use flcd or builtin")


def _password(prompt: str) -> str:
    password = os.environ.get(PASSWORD_ENV)
    if password:
        return password
    return str(typer.prompt(prompt, hide_input=True, confirmation_prompt=True))


def _create_user(username: str, password: str, role: str, patient_id: int | None) -> int:
    from iomt.store import crud
    from iomt.store.db import init_db, session_factory

    engine = init_db(get_settings().resolved_database_url)
    try:
        with session_factory(engine)() as session:
            user = crud.create_user(
                session, username=username, password=password, role=role, patient_id=patient_id
            )
            session.commit()
            return user.id
    finally:
        engine.dispose()


def serve(
    host: str | None = typer.Option(None, help="Bind address (default: settings.api_host)."),
    port: int | None = typer.Option(None, help="Port (default: settings.api_port)."),
    create_admin: str | None = typer.Option(
        None,
        "--create-admin",
        metavar="USER",
        help=f"Create this admin first (password from ${PASSWORD_ENV} or a prompt).",
    ),
    triage: str = typer.Option("flcd", help="Triage step: flcd (fuzzy engine) or builtin."),
    ingest: bool = typer.Option(True, help="Run the device gateway (MQTT) and triage too."),
) -> None:
    """Run the API, dashboard, device gateway and triage (migrates the database first)."""
    import uvicorn

    from iomt.api.app import create_app
    from iomt.errors import ValidationError
    from iomt.store import crud
    from iomt.store.db import init_db, session_factory

    settings = get_settings()
    engine = init_db(settings.resolved_database_url)
    if create_admin:
        with session_factory(engine)() as session:
            if crud.get_user_by_username(session, username=create_admin) is None:
                try:
                    crud.create_user(
                        session,
                        username=create_admin,
                        password=_password(f"Password for admin {create_admin}"),
                        role="admin",
                    )
                except ValidationError as exc:
                    raise typer.BadParameter(exc.reason) from None
                session.commit()
                typer.echo(f"created admin {create_admin!r}")
            else:
                typer.echo(f"admin {create_admin!r} exists; left unchanged")
    app = create_app(settings, engine=engine, triage_step=_triage_step(triage), start_ingest=ingest)
    bind_host = host or settings.api_host
    bind_port = settings.api_port if port is None else port
    typer.echo(f"iomt API on http://{bind_host}:{bind_port} (docs at /docs)")
    uvicorn.run(app, host=bind_host, port=bind_port, log_level=settings.log_level.lower())


@admin_app.command("create-user")
def create_user(
    username: str = typer.Argument(..., help="Login name."),
    role: str = typer.Option("admin", help="admin, clinician or patient."),
    patient_id: int | None = typer.Option(None, help="The patient a patient user is."),
) -> None:
    """Create a user (password from $IOMT_ADMIN_PASSWORD or a prompt)."""
    from iomt.errors import IomtError

    try:
        user_id = _create_user(username, _password(f"Password for {username}"), role, patient_id)
    except IomtError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"created {role} {username!r} (id {user_id})")


@admin_app.command("register-device")
def register_device(
    device_id: str = typer.Argument(..., help="Device id (also its MQTT client id)."),
    kind: str = typer.Option("wearable", help="wearable, imaging or microscope."),
    patient_id: int | None = typer.Option(None, help="The patient whose data it sends."),
) -> None:
    """Register a device and print its secret (shown only this once)."""
    from iomt.errors import IomtError
    from iomt.store import crud
    from iomt.store.db import init_db, session_factory

    engine = init_db(get_settings().resolved_database_url)
    try:
        with session_factory(engine)() as session:
            _, secret = crud.register_device(
                session, device_id=device_id, kind=kind, patient_id=patient_id
            )
            session.commit()
    except IomtError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    typer.echo(f"device {device_id} secret: {secret}")
