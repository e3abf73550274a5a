"""Engines, sessions and schema migration.

:func:`make_engine` builds an engine from a URL (SQLite in WAL mode, or PostgreSQL via
psycopg 3); :func:`init_db` brings the schema to the newest Alembic revision, using the
migrations shipped inside this package (no ``alembic.ini`` needed).
"""

from __future__ import annotations

import logging
from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

#: Milliseconds a SQLite writer waits for the lock before raising "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url``.

    SQLite connections get WAL journaling, ``synchronous=NORMAL`` (durable at checkpoints, safe
    against application crashes), foreign keys and a busy timeout; the parent directory of the
    database file is created. PostgreSQL URLs without a driver use psycopg 3.

    Parameters
    ----------
    url
        SQLAlchemy URL, e.g. ``sqlite:///data/iomt.db`` or
        ``postgresql+psycopg://postgres@127.0.0.1:5432/test``.
    **kwargs
        Passed on to :func:`sqlalchemy.create_engine`.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {}).setdefault("check_same_thread", False)
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory bound to ``engine`` (objects stay usable after commit)."""
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config() -> Config:
    """An Alembic config pointing at the migrations packaged with iomt."""
    config = Config()
    config.set_main_option("script_location", str(files("iomt.store") / "migrations"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run Alembic ``upgrade`` to ``revision`` on ``engine``."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def init_db(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` and migrate its schema to the newest revision.

    Returns
    -------
    Engine
        The engine, ready for :func:`session_factory`.
    """
    engine = make_engine(url, **kwargs)
    upgrade(engine)
    log.info("database ready at %s", engine.url.render_as_string(hide_password=True))
    return engine
