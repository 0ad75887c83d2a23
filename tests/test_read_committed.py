"""app/db.read_committed: the ingest's, the event numbering's and the dispatcher's transactions.

A database lost just as a connection went back to the pool killed the stream worker (CI, issue
10's fault test): the isolation level was set on the connection's session, and SQLAlchemy sets
it back on checkin, outside of anything that wraps the driver's errors, so pymysql's own
OperationalError came out of `store_events` and the worker retries SQLAlchemy errors only. The
level is now set for the one transaction, and nothing runs on the connection as it goes back.
"""

from __future__ import annotations

from typing import Any

import pymysql
import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from app.db import make_engine, read_committed


@pytest.mark.mysql_only
def test_the_transaction_reads_what_others_committed_and_the_next_one_does_not(private_url: str) -> None:
    eng = make_engine(private_url)
    try:
        with eng.begin() as conn:
            conn.execute(text("CREATE TABLE probe (id INT PRIMARY KEY, v INT) ENGINE=InnoDB"))
            conn.execute(text("INSERT INTO probe VALUES (1, 0)"))
        assert _sees_a_commit_made_meanwhile(eng, read_committed(eng)) is True
        # Set for that transaction only: the connection's next one is REPEATABLE READ again.
        with eng.connect() as conn:
            assert conn.exec_driver_sql("SELECT @@SESSION.tx_isolation").scalar_one() == "REPEATABLE-READ"
            conn.rollback()
            assert _sees_a_commit_made_meanwhile(eng, conn.begin(), conn) is False
    finally:
        eng.dispose()


def _sees_a_commit_made_meanwhile(eng: Engine, transaction: Any, conn: Any = None) -> bool:
    with transaction as opened:
        reader = conn if conn is not None else opened
        before = reader.execute(text("SELECT v FROM probe WHERE id = 1")).scalar_one()
        with eng.begin() as other:
            other.execute(text("UPDATE probe SET v = v + 1 WHERE id = 1"))
        return bool(reader.execute(text("SELECT v FROM probe WHERE id = 1")).scalar_one() != before)


@pytest.mark.mysql_only
def test_a_database_lost_as_the_connection_goes_back_to_the_pool_raises_nothing(database_url: str) -> None:
    # The lean pool (the API's, the dispatcher's) sends no ROLLBACK after a COMMIT: the first
    # statement after the loss would have been SQLAlchemy's resetting of the isolation level.
    eng = make_engine(database_url, lean_pool=True, pool_size=1)
    url = make_url(database_url)
    killer = pymysql.connect(host=url.host, port=url.port or 3306, user=url.username, password=url.password or "")
    kills: list[int] = []

    def lose_it(dbapi_connection: Any, _record: Any, _state: Any) -> None:
        if not kills:
            kills.append(dbapi_connection.thread_id())
            killer.cursor().execute(f"KILL {kills[0]}")

    event.listen(eng, "reset", lose_it)
    try:
        with read_committed(eng) as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
        assert kills, "the connection went back to the pool"
        # The lost connection is found out (and replaced) on its next checkout (idle > 1 s:
        # pinged; else its first statement fails once with a wrapped, retryable error).
        assert _eventually_one(eng) == 1
    finally:
        killer.close()
        eng.dispose()


def _eventually_one(eng: Engine) -> int:
    for _ in range(2):  # the first may fail, with SQLAlchemy's (retryable) error, not the driver's
        try:
            with read_committed(eng) as conn:
                return int(conn.execute(text("SELECT 1")).scalar_one())
        except DBAPIError:
            continue
    raise AssertionError("no working connection after the lost one")


def test_it_is_one_transaction_on_either_database(engine: Engine) -> None:
    with read_committed(engine) as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
