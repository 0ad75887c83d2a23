"""Read replicas (DATABASE_REPLICA_URL, docs/scaling.md#read-replicas): where a read request reads.

Stats, lists, CSV exports and the event feed (`app.deps.ReadSessionDep`) read from the replica;
everything else (writes, authentication, the ownership checks that precede a write) uses the
primary (`SessionDep`). A read goes to the primary instead when

- the user wrote in the last REPLICA_STICKY_SECONDS (read-your-writes): every successful write
  request marks its user sticky, in Redis (`pt:sticky:u:<id>` with that TTL, so every API process
  sees it) when Redis is configured, and in this process always; when Redis cannot be asked, the
  read goes to the primary (a missed mark would be a stale read);
- the replica is behind by more than REPLICA_MAX_LAG_SECONDS, or down (`ReplicaMonitor`, checked
  every second; a read that fails to reach the replica is run again on the primary, see
  app/routing.py: a dead replica never answers a 5xx).

Lag is measured like a heartbeat, without writing one: the monitor notes each new GTID position of
the primary (`@@gtid_binlog_pos`) with the time it first saw it; the lag is the age of the oldest
noted position the replica (`@@gtid_slave_pos`) has not reached, 0 when it has everything, so a
stopped SQL thread with nothing to apply is not "behind", and one with work pending is, by as long
as that work waits. Seconds_Behind_Master (SHOW SLAVE/REPLICA STATUS) is reported alongside and is
what a MySQL replica (no MariaDB GTID variables) is judged on (NULL: unknown, so the primary).

The replica's connections run `SET SESSION TRANSACTION READ ONLY`: a write sent there by mistake
fails instead of forking the replica. Without DATABASE_REPLICA_URL every read uses the primary's
reader factory, with no lookup at all.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app import metrics
from app.breaker import CircuitBreaker
from app.clients import AsyncRedis

log = logging.getLogger("pixeltrack.replicas")

CHECK_SECONDS = 1.0  # how often each API process measures the replica's lag
STICKY_KEY = "pt:sticky:u:"
MAX_NOTED = 600  # primary positions remembered while the replica is behind (older ones kept)
# MySQL client errors that mean "the server is not reachable", not "the query is wrong".
CONNECTION_ERRORS = frozenset({1927, 2002, 2003, 2005, 2006, 2013, 2055})

Clock = Callable[[], float]


@dataclass(frozen=True)
class ReadTarget:
    name: str  # "primary" | "replica"
    factory: sessionmaker[Session]


def read_only_engine(engine: Engine) -> Engine:
    """Every connection of `engine` refuses writes (MariaDB/MySQL: error 1792)."""
    if engine.dialect.name == "mysql":

        @event.listens_for(engine, "connect")
        def _read_only(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("SET SESSION TRANSACTION READ ONLY")
            cursor.close()

    return engine


def _gtid(position: str | None) -> dict[int, int]:
    """`0-1-42,1-2-7` → {domain: seq_no}."""
    out: dict[int, int] = {}
    for part in (position or "").split(","):
        fields = part.strip().split("-")
        if len(fields) == 3 and all(f.isdigit() for f in fields):
            out[int(fields[0])] = int(fields[2])
    return out


def _reached(replica: dict[int, int], primary: dict[int, int]) -> bool:
    return all(replica.get(domain, -1) >= seq for domain, seq in primary.items())


class ReplicaMonitor:
    """The replica's state, measured by `check()` (in a thread: it blocks on two servers)."""

    def __init__(self, primary: Engine, replica: Engine, *, max_lag: float, clock: Clock = time.monotonic) -> None:
        self.primary = primary
        self.replica = replica
        self.max_lag = max_lag
        self.clock = clock
        self.up = False
        self.lag: float | None = None
        self.status: dict[str, Any] = {}
        self._noted: list[tuple[float, dict[int, int]]] = []  # (first seen, primary position), oldest first
        self._lock = threading.Lock()

    def usable(self) -> bool:
        return self.up and self.lag is not None and self.lag <= self.max_lag

    def failed(self) -> None:
        """A read could not reach the replica: primary until a check sees it answer again."""
        self.up = False
        metrics.DEPENDENCY_UP.labels("replica").set(0)

    def check(self) -> None:
        with self._lock:
            self._check()
        metrics.DEPENDENCY_UP.labels("replica").set(1 if self.up else 0)
        metrics.REPLICA_LAG.set(-1 if self.lag is None else self.lag)

    def _check(self) -> None:
        now = self.clock()
        try:
            with self.replica.connect() as conn:
                replica_pos = self._scalar(conn, "SELECT @@gtid_slave_pos")
                status = self._replication_status(conn)
        except SQLAlchemyError as exc:
            self.up, self.lag, self.status = False, None, {}
            log.warning("read replica unreachable (%s): reads use the primary", exc.__class__.__name__)
            return
        self.up = True
        behind = status.get("Seconds_Behind_Master", status.get("Seconds_Behind_Source"))
        self.status = {
            "seconds_behind_master": behind,
            "io_running": status.get("Slave_IO_Running", status.get("Replica_IO_Running")),
            "sql_running": status.get("Slave_SQL_Running", status.get("Replica_SQL_Running")),
        }
        if replica_pos is None:  # not MariaDB: Seconds_Behind_Master is all there is
            self.lag = None if behind is None else float(behind)
            return
        try:
            with self.primary.connect() as conn:
                primary_pos = _gtid(self._scalar(conn, "SELECT @@gtid_binlog_pos"))
        except SQLAlchemyError:
            self.lag = None  # the primary is down: nothing to compare with (nor to fall back to)
            return
        noted = self._noted
        if primary_pos and (not noted or noted[-1][1] != primary_pos):
            if len(noted) >= MAX_NOTED:
                noted[-1] = (noted[-1][0], primary_pos)  # keeps the older time: over-, never under-estimates
            else:
                noted.append((now, primary_pos))
        replica = _gtid(replica_pos)
        while noted and _reached(replica, noted[0][1]):
            noted.pop(0)
        self.lag = max(now - noted[0][0] if noted else 0.0, float(behind or 0))

    @staticmethod
    def _scalar(conn: Any, sql: str) -> str | None:
        try:
            value = conn.scalar(text(sql))
        except DBAPIError:
            conn.rollback()
            return None
        return None if value is None else str(value)

    @staticmethod
    def _replication_status(conn: Any) -> dict[str, Any]:
        for statement in ("SHOW REPLICA STATUS", "SHOW SLAVE STATUS"):
            try:
                row = conn.execute(text(statement)).mappings().first()
            except DBAPIError:
                conn.rollback()
                continue
            return dict(row) if row else {}
        return {}


class StickyUsers:
    """Users who wrote in the last `seconds`: in this process, and in Redis for the others."""

    def __init__(
        self,
        seconds: float,
        redis: AsyncRedis | None,
        breaker: CircuitBreaker | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self.redis = redis
        self.breaker = breaker or CircuitBreaker()
        self.clock = clock
        self._until: dict[int, float] = {}

    async def mark(self, user_id: int) -> None:
        if self.seconds <= 0:
            return
        now = self.clock()
        if len(self._until) > 10_000:
            self._until = {uid: t for uid, t in self._until.items() if t > now}
        self._until[user_id] = now + self.seconds
        redis = self.redis
        if redis is not None:
            try:
                await self.breaker.call(lambda: redis.set(f"{STICKY_KEY}{user_id}", 1, px=int(self.seconds * 1000)))
            except Exception:  # noqa: BLE001 - the breaker logs it; this process still knows
                metrics.DEPENDENCY_ERRORS.labels("redis", "replica_sticky").inc()

    async def sticky(self, user_id: int) -> bool:
        if self.seconds <= 0:
            return False
        if self._until.get(user_id, 0.0) > self.clock():
            return True
        redis = self.redis
        if redis is None:
            return False
        try:
            return bool(await self.breaker.call(lambda: redis.exists(f"{STICKY_KEY}{user_id}")))
        except Exception:  # noqa: BLE001 - cannot tell whether another process saw a write: primary
            metrics.DEPENDENCY_ERRORS.labels("redis", "replica_sticky").inc()
            return True


class ReadRouter:
    """Picks the session factory of a read request (see the module docstring)."""

    def __init__(
        self,
        primary: sessionmaker[Session],
        replica: sessionmaker[Session] | None = None,
        monitor: ReplicaMonitor | None = None,
        sticky: StickyUsers | None = None,
    ) -> None:
        self.primary = ReadTarget("primary", primary)
        self.replica = None if replica is None else ReadTarget("replica", replica)
        self.monitor = monitor
        self.sticky = sticky
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.replica is not None

    async def target(self, user_id: int) -> ReadTarget:
        if self.replica is None:
            return self.primary
        assert self.monitor is not None
        assert self.sticky is not None
        chosen = self.primary
        if self.monitor.usable() and not await self.sticky.sticky(user_id):
            chosen = self.replica
        metrics.DB_READS.labels(chosen.name).inc()
        return chosen

    async def wrote(self, user_id: int) -> None:
        if self.sticky is not None:
            await self.sticky.mark(user_id)

    def replica_failed(self, exc: DBAPIError) -> bool:
        """Whether `exc` says the replica is unreachable (then it is marked down: run the read again)."""
        args = getattr(exc.orig, "args", ())
        if self.monitor is None or not (exc.connection_invalidated or (args and args[0] in CONNECTION_ERRORS)):
            return False
        log.warning("read replica failed a read (%s): reading from the primary", exc.__class__.__name__)
        self.monitor.failed()
        return True

    async def start(self) -> None:
        if self.monitor is not None:
            await asyncio.to_thread(self.monitor.check)
            self._task = asyncio.create_task(self._watch(self.monitor))

    async def _watch(self, monitor: ReplicaMonitor) -> None:
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            try:
                await asyncio.to_thread(monitor.check)
            except Exception:  # the loop must survive anything; the next check tries again
                log.exception("replica check failed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.monitor is not None:
            self.monitor.replica.dispose()

    def readiness(self) -> dict[str, Any]:
        """/readyz's `replica` block (after a fresh `monitor.check()`)."""
        assert self.monitor is not None
        monitor = self.monitor
        return {
            "reads_from": "replica" if monitor.usable() else "primary",
            "lag_seconds": None if monitor.lag is None else round(monitor.lag, 3),
            "max_lag_seconds": monitor.max_lag,
            **monitor.status,
        }
