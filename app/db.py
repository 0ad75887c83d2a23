"""The one place the database engine and sessions are made.

MySQL/MariaDB through pymysql in production; an embedded SQLite file (WAL mode,
foreign keys on) when no MySQL is configured. The engine is created in the app's
lifespan (see app.main) and sessions are handed out by `app.deps.SessionDep`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

# Defaults of DATABASE_CONNECT/READ/WRITE_TIMEOUT_SECONDS (app/settings.py).
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
WRITE_TIMEOUT = 60.0


def make_engine(
    url: str,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    read_timeout: float | None = READ_TIMEOUT,
    write_timeout: float | None = WRITE_TIMEOUT,
    **kwargs: Any,
) -> Engine:
    """MySQL/MariaDB connections get socket timeouts: pymysql has none for reads and writes by
    default, so a server that stops answering without closing the connection (host frozen,
    network partition, a half-open socket) would block a request or the worker forever."""
    # Error messages (logged) show the SQL but never its parameters: emails, IPs, user agents.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    if url.startswith("mysql"):
        timeouts = {"connect_timeout": connect_timeout, "read_timeout": read_timeout, "write_timeout": write_timeout}
        kwargs["connect_args"] = {**timeouts, **kwargs.get("connect_args", {})}
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_recycle", 3600)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on error (CLI, loaders, worker)."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
