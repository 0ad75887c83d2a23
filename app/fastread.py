"""Reads of one owned object on the event loop: the GET of a campaign, a group or a link.

Through the request's `Session` such a GET cost a thread hop, the ORM's unit of work, pymysql's
pure-Python protocol and a COMMIT: ~2 ms per request, most of it with the GIL held, 0.09x the
throughput of `/healthz` against a target of 0.3x (SPEC §6; docs/benchmarks.md, authenticated
CRUD). Here the same statement (`services.common.owned_select`, compiled once per model by
SQLAlchemy for the app's dialect) runs on an asyncmy pool: a MySQL protocol in Cython, on
asyncio, in autocommit (one SELECT is its own transaction: no BEGIN, no COMMIT round trip), straight
from the event loop. Its values go through the columns' own SQLAlchemy result processors (JSON,
Boolean, Enum...), so the response is the one the ORM path gave.

Where that driver does not apply (SQLite, the embedded default; a MariaDB URL with options it is
not given, e.g. TLS), `ThreadReads` runs the same statement on the app's engine in a worker thread:
one interface, `OwnedReads.row()`.

Both read the primary, as the request's session did (a user reads their own writes at once). A
pooled connection the server closed while it sat idle (restart, wait_timeout, KILL) is seen as
closed by the pool and replaced; one that breaks mid-read, or times out (DATABASE_READ_TIMEOUT_SECONDS),
is dropped and fails that read. Driver errors are raised as SQLAlchemy's exception of the same
kind, so app.errors answers them as on every other route (503 when the database is down or its
schema missing), as the lean pool's engine does (app/db.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import asyncmy
import asyncmy.errors
from sqlalchemy import Dialect, Engine, Select, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool

from app.db import connect_read_only
from app.services.common import Join, owned_key, owned_statement

Row = dict[str, Any]  # attribute name -> value, as the model's mapped attributes hold them

# URL query options the driver is given; any other (ssl_*, init_command...) keeps ThreadReads.
_DRIVER_OPTIONS = frozenset({"charset"})


@dataclass(frozen=True)
class _Query:
    stmt: Select[Any]
    sql: str  # compiled for the dialect, %(name)s parameters
    keys: tuple[str, ...]  # the model's attribute of each selected column
    processors: tuple[Callable[[Any], Any] | None, ...]


class OwnedReads(Protocol):
    async def row(self, model: type[Any], joins: tuple[Join, ...], object_id: int, owner_id: int | None) -> Row | None:
        """The `model` row with this id (whose campaign `owner_id` owns; None: any owner), or None."""

    async def close(self) -> None: ...


class _Queries:
    """The owned statement of each (model, joins, admin) compiled for the dialect, on first use."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._cache: dict[tuple[Any, ...], _Query] = {}

    def get(self, model: type[Any], joins: tuple[Join, ...], admin: bool) -> _Query:
        key = owned_key(model, joins, admin)
        query = self._cache.get(key) if key is not None else None
        if query is None:
            mapper = inspect(model)
            columns = list(mapper.local_table.columns)
            stmt = owned_statement(model, joins, admin, columns=True)
            query = _Query(
                stmt=stmt,
                sql=str(stmt.compile(dialect=self.dialect)),
                keys=tuple(mapper.get_property_by_column(column).key for column in columns),
                processors=tuple(column.type.result_processor(self.dialect, None) for column in columns),
            )
            if key is not None:
                self._cache[key] = query
        return query


def _params(object_id: int, owner_id: int | None) -> dict[str, int]:
    return {"object_id": object_id} if owner_id is None else {"object_id": object_id, "owner_id": owner_id}


class ThreadReads:
    """The statement on the app's engine, in a worker thread (SQLite; driver options asyncmy lacks)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.queries = _Queries(engine.dialect)

    async def row(self, model: type[Any], joins: tuple[Join, ...], object_id: int, owner_id: int | None) -> Row | None:
        query = self.queries.get(model, joins, owner_id is None)
        return await run_in_threadpool(self._read, query, _params(object_id, owner_id))

    def _read(self, query: _Query, params: dict[str, int]) -> Row | None:
        with connect_read_only(self.engine) as conn:
            found = conn.execute(query.stmt, params).first()
        return None if found is None else dict(zip(query.keys, found, strict=True))

    async def close(self) -> None:
        return None


class DriverReads:
    """The compiled SQL on an asyncmy pool (MySQL/MariaDB), on the event loop."""

    def __init__(
        self, url: URL, dialect: Dialect, *, pool_size: int, connect_timeout: float, read_timeout: float | None
    ):
        self.queries = _Queries(dialect)
        self._kwargs: dict[str, Any] = {
            "host": url.host or "localhost",
            "port": url.port or 3306,
            "user": url.username or "",
            "password": url.password or "",
            "db": url.database,
            "charset": url.query.get("charset", "utf8mb4"),
            "autocommit": True,
            "connect_timeout": connect_timeout,
        }
        # One deadline over the whole answer (`_fetch`), not the driver's read_timeout: asyncmy
        # wraps each socket read in asyncio.wait_for, a Task per read (7-17 % of a query's CPU in
        # a loop of reads, measured); a timed-out read fails alike (TimeoutError, an OSError).
        self._read_timeout = read_timeout
        self._size = pool_size
        self._pool: Any = None
        self._opening = asyncio.Lock()

    async def _open(self) -> Any:
        """The pool, made on first use (no connection at start: the API starts while the database
        is down, as its engine does)."""
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncmy.create_pool(minsize=0, maxsize=self._size, pool_recycle=3600, **self._kwargs)
        return self._pool

    async def row(self, model: type[Any], joins: tuple[Join, ...], object_id: int, owner_id: int | None) -> Row | None:
        query = self.queries.get(model, joins, owner_id is None)
        params = _params(object_id, owner_id)
        try:
            found = await self._fetch(query.sql, params)
        except (asyncmy.errors.Error, OSError) as exc:
            raise _as_sqlalchemy(query.sql, exc) from exc
        if found is None:
            return None
        return {
            key: value if process is None else process(value)
            for key, process, value in zip(query.keys, query.processors, found, strict=True)
        }

    async def _fetch(self, sql: str, params: dict[str, int]) -> tuple[Any, ...] | None:
        pool = self._pool or await self._open()
        async with pool.acquire() as conn:
            try:
                async with asyncio.timeout(self._read_timeout), conn.cursor() as cursor:
                    await cursor.execute(sql, params)
                    found: tuple[Any, ...] | None = await cursor.fetchone()
                    return found
            except BaseException:
                conn.close()  # broken or cut short mid-answer: the pool drops it
                raise

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()


def _as_sqlalchemy(sql: str, exc: BaseException) -> DBAPIError:
    """The driver's error as SQLAlchemy's exception of the same kind (OperationalError...), the
    one app.errors maps to HTTP; a timeout or a socket error is an OperationalError."""
    if not isinstance(exc, asyncmy.errors.Error):
        exc = asyncmy.errors.OperationalError(2013, f"{exc.__class__.__name__} reading from the database")
    error = DBAPIError.instance(sql, None, exc, asyncmy.errors.Error, hide_parameters=True)
    assert isinstance(error, DBAPIError)  # orig is the driver's: never the bare StatementError
    return error


def make_owned_reads(
    url: str, engine: Engine, *, pool_size: int, connect_timeout: float, read_timeout: float | None
) -> OwnedReads:
    parsed = make_url(url)
    if parsed.get_backend_name() != "mysql" or not set(parsed.query) <= _DRIVER_OPTIONS:
        return ThreadReads(engine)
    return DriverReads(
        parsed, engine.dialect, pool_size=pool_size, connect_timeout=connect_timeout, read_timeout=read_timeout
    )
