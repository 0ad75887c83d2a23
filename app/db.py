"""The one place the database engine and sessions are made, and transactions retried.

MySQL/MariaDB through pymysql in production; an embedded SQLite file (WAL mode,
foreign keys on) when no MySQL is configured. The engine is created in the app's
lifespan (see app.main) and sessions are handed out by `app.deps.SessionDep`.

SQLite transactions start with `BEGIN IMMEDIATE` (SQLAlchemy's pysqlite recipe: the driver's
own BEGIN is turned off and the engine's `begin` event emits ours): the write lock is taken
before the transaction's first read, as a locking read (`FOR UPDATE`, a no-op on SQLite)
would on MariaDB, so a read-then-write (the report counters' "before" sums) never works
from a snapshot another writer has moved on from. Readers that write nothing opt out with
`read_only()` (plain `BEGIN`: a WAL snapshot, no lock, never waiting for a writer): GET and
HEAD requests, CSV exports, the click path's link lookup, readiness checks.

MariaDB deadlocks (1213) and lock wait timeouts (1205) roll the transaction back; the whole
transaction is then run again (`retrying`, bounded, with jittered backoff): the request's
(app/routing.TransactionRoute) and the ingest batch's (app/tracking/ingest.store_events).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from app.services.counters.session import install

# Defaults of DATABASE_CONNECT/READ/WRITE_TIMEOUT_SECONDS (app/settings.py).
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
WRITE_TIMEOUT = 60.0
log = logging.getLogger("pixeltrack.db")
T = TypeVar("T")

READ_COMMITTED = "READ COMMITTED"
READ_ONLY = "pixeltrack_read_only"  # execution option: SQLite `BEGIN` (no write lock)
TRANSIENT_ERRORS = frozenset({1205, 1213})  # MariaDB/MySQL: lock wait timeout, deadlock
RETRY_ATTEMPTS = 5  # runs of one transaction in all
RETRY_BASE_DELAY = 0.02  # seconds; doubles per attempt, full jitter


def make_engine(
    url: str,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    read_timeout: float | None = READ_TIMEOUT,
    write_timeout: float | None = WRITE_TIMEOUT,
    lean_pool: bool = False,
    **kwargs: Any,
) -> Engine:
    """MySQL/MariaDB connections get socket timeouts: pymysql has none for reads and writes by
    default, so a server that stops answering without closing the connection (host frozen,
    network partition, a half-open socket) would block a request or the worker forever.

    `lean_pool` (the API's engine, MySQL/MariaDB): two of the four round trips a short request
    made go (see `_lean_pool`)."""
    # Error messages (logged) show the SQL but never its parameters: emails, IPs, user agents.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # no BEGIN from the driver: see _sqlite_begin
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")

        return engine
    if url.startswith("mysql"):
        timeouts = {"connect_timeout": connect_timeout, "read_timeout": read_timeout, "write_timeout": write_timeout}
        kwargs["connect_args"] = {**timeouts, **kwargs.get("connect_args", {})}
    kwargs.setdefault("pool_pre_ping", not lean_pool)
    if lean_pool:
        kwargs.setdefault("pool_reset_on_return", None)  # _lean_pool's "reset" event does it
    kwargs.setdefault("pool_recycle", 3600)
    # At most 30 connections per process, as before (10 + 20 overflow), but all of them kept once
    # opened: QueuePool closes an overflow connection when it is returned, and opening one costs
    # pymysql a TLS context (~40 ms of CPU here, docs/benchmarks.md): with 16 requests in flight
    # the overflow churned open/close, and that alone took most of an authenticated request's CPU.
    kwargs.setdefault("pool_size", 30)
    kwargs.setdefault("max_overflow", 0)
    engine = create_engine(url, **kwargs)
    if lean_pool:
        _lean_pool(engine)
    return engine


PING_IDLE_SECONDS = 1.0  # a pooled connection idle longer is pinged before use
_RETURNED = "pixeltrack_returned_at"  # connection record info: when it went back to the pool
_COMMITTED = "pixeltrack_committed"  # connection record info: committed, nothing run since


def _lean_pool(engine: Engine) -> None:
    """Round trips a short request no longer makes (measured: bench/auth_bench.py):

    - the ping on every checkout (`pool_pre_ping`): only a connection that sat idle in the pool
      longer than PING_IDLE_SECONDS is pinged (a dead one is replaced, as pre-ping would); under
      load connections come back within milliseconds. A connection that died in the last second
      fails its request once (503), and SQLAlchemy then replaces the pool's connections;
    - the ROLLBACK the pool sends when a connection is returned (reset on return) right after the
      session committed: nothing ran since the COMMIT, so there is nothing to roll back. Any
      other return (an error, a rollback, a statement after the commit) still rolls back.
    """
    dialect = engine.dialect
    commit = dialect.do_commit

    def do_commit(dbapi_connection: Any) -> None:
        commit(dbapi_connection)
        dbapi_connection.info[_COMMITTED] = True  # only once the COMMIT has succeeded

    dialect.do_commit = do_commit  # type: ignore[method-assign]

    @event.listens_for(engine, "begin")
    def _began(conn: Connection) -> None:
        conn.connection.info.pop(_COMMITTED, None)

    @event.listens_for(engine, "reset")
    def _reset(dbapi_connection: Any, record: Any, state: Any) -> None:
        if not state.transaction_was_reset and not record.info.pop(_COMMITTED, False):
            dbapi_connection.rollback()

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get(_RETURNED)
        if returned is not None and time.monotonic() - returned < PING_IDLE_SECONDS:
            return
        try:
            dbapi_connection.ping(False)
        except Exception as exc:
            raise DisconnectionError(str(exc.__class__.__name__)) from exc


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """The app's sessions: every write through them keeps the report counters
    (app/services/counters/session.py)."""
    return install(sessionmaker(bind=engine, expire_on_commit=False, autoflush=False))


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


def connect_read_only(engine: Engine) -> Connection:
    """A connection whose transactions only read (SQLite: no write lock)."""
    return engine.connect().execution_options(**{READ_ONLY: True})


@contextmanager
def read_committed(engine: Engine) -> Iterator[Connection]:
    """One transaction, in READ COMMITTED on MariaDB/MySQL (SQLite: the engine's own).

    Set for this transaction only (`SET TRANSACTION`, one statement, wrapped by SQLAlchemy like
    any other), never on the session: SQLAlchemy would set it back as the connection returns to
    the pool, outside of anything that wraps or survives errors, so a database lost at that
    moment raised the driver's own error out of the caller (issue 10: the worker died)."""
    with engine.connect() as conn, conn.begin():
        if conn.dialect.name in ("mysql", "mariadb") and conn.default_isolation_level != READ_COMMITTED:
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        yield conn


def read_only(session: Session) -> None:
    """Begin the session's transaction as a reader (SQLite: no write lock; elsewhere: nothing)."""
    if session.get_bind().dialect.name == "sqlite":
        session.connection(execution_options={READ_ONLY: True})


def _code(exc: DBAPIError) -> Any:
    args = getattr(exc.orig, "args", ())
    return args[0] if args else None


def is_transient(exc: BaseException) -> bool:
    """A deadlock or lock wait timeout: the transaction was rolled back and may simply run again."""
    return isinstance(exc, DBAPIError) and _code(exc) in TRANSIENT_ERRORS


def retry_delay(attempt: int) -> float:
    """Seconds to wait before run `attempt + 1` (full jitter: concurrent losers spread out)."""
    return random.uniform(0, RETRY_BASE_DELAY * 2**attempt)


def retrying(run: Callable[[], T], *, what: str) -> T:
    """`run()` (one whole transaction), run again on a deadlock / lock wait timeout, up to
    RETRY_ATTEMPTS runs in all; the last error is raised."""
    for attempt in range(RETRY_ATTEMPTS):
        try:
            return run()
        except DBAPIError as exc:
            if not is_transient(exc) or attempt == RETRY_ATTEMPTS - 1:
                raise
            log.warning("%s: transaction rolled back (%s); running it again", what, _code(exc))
            time.sleep(retry_delay(attempt))
    raise AssertionError("unreachable")
