"""Alembic environment for iomt's packaged migrations.

Run through :func:`iomt.store.db.upgrade` (which passes an open connection in
``config.attributes["connection"]``), or with the ``alembic`` tool and
``-x url=<database url>``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from iomt.store.db import make_engine
from iomt.store.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate over the given connection, or over a new one to ``-x url=...``."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise RuntimeError("pass the database with: alembic -x url=<database url> ...")
    engine = make_engine(url)
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations_online()
