"""Commit order for events: their `seq`, handed out under the lock of the one `event_sequence` row.

The feed and the webhooks read events by `seq`, never by `id`: an auto-increment id is handed
out at INSERT, so a transaction that commits late leaves a lower id behind a reader that has
already moved past it. `seq` cannot be overtaken that way: a transaction that writes events
takes the `event_sequence` row's lock as its last step (`reserve`), numbers its events above
every `seq` handed out before, and keeps the lock until it commits. The next writer gets the lock
(and higher numbers) only after that commit, so when a reader sees `last_seq` = N committed,
every event with `seq` <= N is committed too: a reader that follows `seq` up to `last_seq` sees
each event exactly once. `seq` is increasing, not dense (an event refused by INSERT IGNORE leaves
its number unused).

`assign` is the sequencer of rows written without a `seq` (by a worker from before `reserve`,
during an upgrade): under the same lock, the committed rows still without one get numbers
above every `seq` handed out before. The dispatcher runs it every poll and the feed before it
reads, each an indexed read that finds nothing once the old workers are gone.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, exists, insert, select, update

from app.db import connect_read_only, read_committed, retrying
from app.models import Event, EventSequence

LIMIT = 10_000  # rows per run
CHUNK = 1000


def pending(conn: Connection) -> bool:
    """Some committed event waits for its `seq` (an indexed read)."""
    return bool(conn.scalar(select(exists().where(Event.seq.is_(None)))))


def last_seq(conn: Connection) -> int:
    return conn.scalar(select(EventSequence.last_seq).where(EventSequence.id == 1)) or 0


def _lock(conn: Connection) -> int:
    stmt = select(EventSequence.last_seq).where(EventSequence.id == 1).with_for_update()
    last = conn.scalar(stmt)
    if last is None:
        conn.execute(
            insert(EventSequence)
            .prefix_with("IGNORE", dialect="mysql")
            .prefix_with("OR IGNORE", dialect="sqlite")
            .values(id=1, last_seq=0)
        )
        last = conn.scalar(stmt) or 0
    return last


def reserve(conn: Connection, count: int) -> int:
    """Take `count` numbers for this transaction's events, which must be its last writes: locks
    the sequence until the commit. Returns the last `seq` before them (they are base+1..base+count)."""
    base = _lock(conn)
    conn.execute(update(EventSequence).where(EventSequence.id == 1).values(last_seq=base + count))
    return base


def _assign(engine: Engine, limit: int) -> int:
    # READ COMMITTED: the read after the lock sees every row committed before it was taken.
    with read_committed(engine) as conn:
        base = _lock(conn)
        ids = list(conn.scalars(select(Event.id).where(Event.seq.is_(None)).order_by(Event.id).limit(limit)))
        if not ids:
            return 0
        lowest = ids[0]
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            # Usually one run of ids (one worker): a range, not a thousand bound parameters;
            # every id of the range is in `chunk`, so it numbers exactly those rows.
            contiguous = chunk[-1] - chunk[0] == len(chunk) - 1
            which = Event.id.between(chunk[0], chunk[-1]) if contiguous else Event.id.in_(chunk)
            conn.execute(update(Event).where(which).values(seq=Event.id - lowest + base + 1))
        conn.execute(update(EventSequence).where(EventSequence.id == 1).values(last_seq=base + ids[-1] - lowest + 1))
        return len(ids)


def assign(engine: Engine, *, limit: int = LIMIT) -> int:
    """Number the committed events still without `seq` (at most `limit`); returns how many."""
    with connect_read_only(engine) as conn:
        if not pending(conn):
            return 0
    return retrying(lambda: _assign(engine, limit), what="sequence events")
