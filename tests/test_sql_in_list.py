"""`services.sql.in_list` selects exactly the rows of its values, whichever way it writes them:
plain integers and plain strings joined in one pass, anything else as SQLAlchemy's literals a
value at a time (quotes, backslashes, commas, empty strings, Unicode), on both legs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence

import pytest
from sqlalchemy import BigInteger, Column, Engine, MetaData, String, Table, insert, select

from app.services.sql import _joined, in_list

ODD = ["it's", "a,b", "", "back\\slash", "naïve 雪", "'); DROP TABLE t; --", "%s"]
PLAIN = ["0123456789abcdef01234567", "1780000000123-0", "~7:key.v_1-2"]


@pytest.fixture
def probe(engine: Engine) -> Iterator[Table]:
    table = Table(
        f"in_list_{uuid.uuid4().hex[:12]}",
        MetaData(),
        Column("id", BigInteger, primary_key=True, autoincrement=False),
        Column("name", String(64)),
    )
    table.create(engine)
    with engine.begin() as conn:
        conn.execute(insert(table), [{"id": n + 1, "name": name} for n, name in enumerate(ODD + PLAIN)])
    try:
        yield table
    finally:
        table.drop(engine)


def _ids(engine: Engine, table: Table, column: Column[object], values: Sequence[object]) -> list[int]:
    with engine.connect() as conn:
        return sorted(conn.scalars(select(table.c.id).where(in_list(column, values))))


def test_plain_lists_are_joined_in_one_pass_and_others_are_not() -> None:
    assert _joined([3, 1, 2]) == "3,1,2"
    assert _joined(PLAIN) == "'" + "','".join(PLAIN) + "'"
    for other in ([], [True, 2], [1, "2"], [1.5], ["a,b"], ["a", ""], ["it's"], ["x y"], [None]):
        assert _joined(other) is None, other


def test_each_kind_of_list_selects_exactly_its_rows(engine: Engine, probe: Table) -> None:
    names = ODD + PLAIN
    assert _ids(engine, probe, probe.c.id, [2, 5, 9, 999]) == [2, 5, 9]
    assert _ids(engine, probe, probe.c.name, PLAIN) == [len(ODD) + 1, len(ODD) + 2, len(ODD) + 3]
    for n, name in enumerate(ODD):  # each odd string alone, then all of them with the plain ones
        assert _ids(engine, probe, probe.c.name, [name]) == [n + 1], name
    assert _ids(engine, probe, probe.c.name, names) == list(range(1, len(names) + 1))
    assert _ids(engine, probe, probe.c.name, ["a", "b"]) == []  # "a,b" is one value, not two
    assert _ids(engine, probe, probe.c.id, []) == []
    with engine.connect() as conn:  # the table is intact
        assert len(conn.execute(select(probe.c.id)).all()) == len(names)
