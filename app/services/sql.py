"""SQL that differs between SQLite and MariaDB/MySQL, compiled per dialect, and the upsert."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import Connection, Dialect, Float, Integer, Table, bindparam, case, func, literal_column
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import HasHints
from sqlalchemy.types import UserDefinedType

DB = Session | Connection
H = TypeVar("H", bound=HasHints)


def force_index(stmt: H, table: Any, index: str) -> H:
    """`stmt` reading `table` through `index` on MariaDB/MySQL (FORCE INDEX); SQLite plans alone.
    For reads whose plan must not follow the statistics: a locking read that scans, locks."""
    hint = f"FORCE INDEX ({index})"
    return stmt.with_hint(table, hint, dialect_name="mysql").with_hint(table, hint, dialect_name="mariadb")


def by_event_id(model: Any) -> str:
    """The unique event_id index of openings/clicks: their rows read by it, never by a scan (which
    would wait for the locks of rows another worker is inserting, and deadlock with it)."""
    return f"uq_{model.__tablename__}_event_id"


class _MicrosecondsBetween(FunctionElement[float]):
    """`end - start` in microseconds (NULL if either is NULL)."""

    type = Float()
    inherit_cache = True
    name = "microseconds_between"


@compiles(_MicrosecondsBetween)
def _us_between_sqlite(element: _MicrosecondsBetween, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    # julianday() is a double: ~50 µs resolution today, far below the millisecond reported.
    return f"CAST(ROUND((julianday({end}) - julianday({start})) * 86400000000.0) AS INTEGER)"


@compiles(_MicrosecondsBetween, "mysql")
@compiles(_MicrosecondsBetween, "mariadb")
def _us_between_mysql(element: _MicrosecondsBetween, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"TIMESTAMPDIFF(MICROSECOND, {start}, {end})"


def delay_us(start: Any, end: Any) -> ColumnElement[Any]:
    """`end - start` in whole microseconds, negative clamped to 0, NULL if either is NULL."""
    raw = _MicrosecondsBetween(start, end)
    zero = literal_column("0", Integer())  # a literal: pymysql's executemany takes no parameter after VALUES
    return case((raw < zero, zero), else_=raw)


class _EpochBucket(FunctionElement[int]):
    """floor(seconds since 1970-01-01 00:00 UTC / step) of a stored (naive UTC) datetime."""

    type = Integer()
    inherit_cache = True
    name = "epoch_bucket"


@compiles(_EpochBucket)
def _bucket_sqlite(element: _EpochBucket, compiler: SQLCompiler, **kw: Any) -> str:
    column, step = (compiler.process(clause, **kw) for clause in element.clauses)
    # Whole seconds only: strftime() rounds to the millisecond, so 23:59:59.9995 would be the next day.
    return f"(CAST(strftime('%s', substr({column}, 1, 19)) AS INTEGER) / {step})"


@compiles(_EpochBucket, "mysql")
@compiles(_EpochBucket, "mariadb")
def _bucket_mysql(element: _EpochBucket, compiler: SQLCompiler, **kw: Any) -> str:
    column, step = (compiler.process(clause, **kw) for clause in element.clauses)
    # TO_SECONDS counts from year 0 and ignores the session time zone (UNIX_TIMESTAMP would not).
    return f"((TO_SECONDS({column}) - 62167219200) DIV {step})"


def epoch_bucket(column: Any, step: int) -> _EpochBucket:
    return _EpochBucket(column, literal_column(str(int(step)), Integer()))


class _IntDiv(FunctionElement[int]):
    """floor(a / b) of non-negative integers."""

    type = Integer()
    inherit_cache = True
    name = "int_div"


@compiles(_IntDiv)
def _int_div_sqlite(element: _IntDiv, compiler: SQLCompiler, **kw: Any) -> str:
    a, b = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"({a} / {b})"


@compiles(_IntDiv, "mysql")
@compiles(_IntDiv, "mariadb")
def _int_div_mysql(element: _IntDiv, compiler: SQLCompiler, **kw: Any) -> str:
    a, b = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"({a} DIV {b})"


def int_div(column: Any, divisor: int) -> _IntDiv:
    return _IntDiv(column, literal_column(str(int(divisor)), Integer()))


class _Least(FunctionElement[Any]):
    """The smaller of two values, NULL if either is (LEAST / SQLite's two-argument min)."""

    inherit_cache = True
    name = "least_of"


@compiles(_Least)
def _least_sqlite(element: _Least, compiler: SQLCompiler, **kw: Any) -> str:
    a, b = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"min({a}, {b})"


@compiles(_Least, "mysql")
@compiles(_Least, "mariadb")
def _least_mysql(element: _Least, compiler: SQLCompiler, **kw: Any) -> str:
    a, b = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"LEAST({a}, {b})"


def earlier_of(current: Any, new: Any) -> ColumnElement[Any]:
    """The earlier of two instants, ignoring a NULL one (NULL if both are). Evaluated again on
    its own result it gives the same value, so an assignment `x = earlier_of(x, new)` can be
    read by the assignments after it (MySQL applies them in order) without changing them."""
    return func.coalesce(_Least(current, new), current, new)


def in_list(column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """`column IN (...)` with the values written into the SQL as it runs instead of one bound
    parameter each: the ingest's lists of a batch's ids (up to a thousand or two) cost the driver
    an escape per value and SQLAlchemy a parameter each, a visible share of the worker's CPU
    (docs/benchmarks.md, worker). The statement still compiles and caches once.

    Integers, and strings of letters, digits and `_.~:-` only (the event ids our code makes; the
    ids of stream entries), are joined here in one pass (`_joined`) and rendered as one literal;
    any other list as SQLAlchemy's literals of the column's type, a value at a time."""
    joined = _joined(values)
    if joined is not None:
        return column.in_(bindparam(None, [joined], type_=_SQLText(), expanding=True, literal_execute=True))  # type: ignore[no-any-return]
    return column.in_(bindparam(None, list(values), type_=column.type, expanding=True, literal_execute=True))  # type: ignore[no-any-return]


# Strings that need no escaping in any SQL dialect, joined by commas (which they cannot contain).
_PLAIN_LIST = re.compile(r"[0-9A-Za-z_.~:-]+(?:,[0-9A-Za-z_.~:-]+)*")


def _joined(values: Sequence[Any]) -> str | None:
    """The values as the SQL of a list (`1,2,3`, `'a','b'`), or None when they are not all plain
    integers or all plain strings (or there are none)."""
    if not values:
        return None
    if all(type(value) is int for value in values):  # (not bool, not an int subclass)
        return ",".join(map(str, values))
    if all(type(value) is str for value in values):
        body = ",".join(values)
        if _PLAIN_LIST.fullmatch(body) and body.count(",") == len(values) - 1:
            return "'" + body.replace(",", "','") + "'"
    return None


class _SQLText(UserDefinedType[str]):
    """A literal that is SQL already (`_joined`'s list), written into the statement as it is."""

    cache_ok = True

    def get_col_spec(self, **_kw: Any) -> str:
        return "TEXT"

    def literal_processor(self, dialect: Dialect) -> Callable[[str], str]:
        return _as_is


def _as_is(value: str) -> str:
    return value


def dialect_name(db: DB) -> str:
    bind = db.get_bind() if isinstance(db, Session) else db
    return bind.dialect.name


def upsert_statement(
    dialect: str,
    table: Table,
    key: Sequence[str],
    updates: Callable[[Any], list[tuple[str, Any]]],
    *,
    columns: Sequence[str] = (),
    select: Any = None,
) -> Executable:
    """The statement of `upsert` for this dialect (see there), to build once and run many times."""
    if dialect in ("mysql", "mariadb"):
        my = mysql.insert(table)
        if select is not None:
            my = my.from_select(columns, select)
        return my.on_duplicate_key_update(updates(my.inserted))
    lite = sqlite.insert(table)
    if select is not None:
        lite = lite.from_select(columns, select)
    return lite.on_conflict_do_update(index_elements=list(key), set_=dict(updates(lite.excluded)))


@cache
def _rows_upsert(
    dialect: str, table: Table, key: tuple[str, ...], updates: Callable[[Any], list[tuple[str, Any]]]
) -> Executable:
    # Built once: building the statement costs more than running it on a few rows.
    return upsert_statement(dialect, table, key, updates)


def upsert(
    db: DB,
    table: Table,
    key: Sequence[str],
    updates: Callable[[Any], list[tuple[str, Any]]],
    *,
    rows: list[dict[str, Any]] | None = None,
    columns: Sequence[str] = (),
    select: Any = None,
) -> None:
    """INSERT rows (or the result of `select` into `columns`); on a duplicate `key`, apply
    `updates(new)`, where `new.<column>` is the value that was to be inserted. The updates are
    applied in the order given (MySQL evaluates them left to right). `updates` is a module-level
    function: the statement for `rows` is built once per table, key and function."""
    if rows is not None:
        if rows:
            db.execute(_rows_upsert(dialect_name(db), table, tuple(key), updates), rows)
        return
    db.execute(upsert_statement(dialect_name(db), table, key, updates, columns=columns, select=select))
