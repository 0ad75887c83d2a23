"""Write a batch of tracking events to the database: the one insert path.

Used by the Redis Streams worker, the in-process (embedded / degraded) flusher and
the benchmarks. One SELECT resolves the batch's pixels (and links/contacts), one
multi-row INSERT ... IGNORE per table writes them; `event_id` is unique, so a batch
replayed after a crash inserts nothing twice. Events whose pixel, link or contact
was deleted are skipped and counted. Tracking consent (docs/consent.md) is applied here, from
the contact's level read with the batch's pixels/contacts: events of `off` contacts are skipped
and counted (`skipped_consent`), those of `anonymous` contacts are stored without IP and user
agent (after classification, which used them). Unclassified events (the request path only notes raw
facts) get their client class and reason here, before the transaction (`_classified`). In the same transaction the report counters
(app/services/counters.add_events) grow by exactly the rows inserted: when the INSERT
reports fewer rows than offered (a replay), the batch is redone in "careful" mode,
which first drops the events already stored (a locking read, so the count is exact).
A MariaDB deadlock or lock wait timeout (e.g. with a contact deleted meanwhile) rolls the
batch's transaction back; it is run again at once (app/db.retrying) instead of failing the
batch (the worker's backoff, the flusher's retry later) for what is a routine collision.
The same transaction writes the events outbox of the feed and the webhooks (app/webhooks/outbox.py),
last (its events take their `seq` under a lock held to the commit: app/webhooks/sequence.reserve),
and the batch's conversions (POST /e, GET /e.gif) through app/tracking/conversions.store, which
applies their consent rules and idempotency itself.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Insert, insert, select
from sqlalchemy.exc import SQLAlchemyError

from app import metrics
from app.db import read_committed, retrying
from app.models import Contact, Link, Pixel, Tracking
from app.models.tracking import CLICKS, OPENINGS, EventTable
from app.services import counters
from app.services.sql import in_list
from app.tracking import click_rules
from app.tracking.classify import classify
from app.tracking.click_rules import DEFAULT_RULES, ClickRules
from app.tracking.conversions import ConversionIn
from app.tracking.conversions import store as store_conversions
from app.tracking.events import CLICK, OPEN, ConversionEvent, Event, Tracked
from app.webhooks import outbox

CHUNK = 1000
FULL, OFF = Tracking.full.value, Tracking.off.value  # a contact's consent (docs/consent.md)


@dataclass
class IngestResult:
    inserted: int = 0
    skipped_missing: int = 0
    duplicates: int = 0
    skipped_consent: int = 0  # events of contacts whose tracking is `off` (docs/consent.md)
    conversions: int = 0  # conversions stored (not stored before; consent applied)

    def __iadd__(self, other: IngestResult) -> IngestResult:
        self.inserted += other.inserted
        self.skipped_missing += other.skipped_missing
        self.duplicates += other.duplicates
        self.skipped_consent += other.skipped_consent
        self.conversions += other.conversions
        return self


def _ignore(stmt: Insert) -> Insert:
    return stmt.prefix_with("IGNORE", dialect="mysql").prefix_with("OR IGNORE", dialect="sqlite")


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _lookup(conn: Connection, stmt: Any, ids: list[int], *, lock: bool = False) -> dict[int, tuple[Any, ...]]:
    """Rows by id; with `lock`, shared-locked until the commit (they cannot be deleted meanwhile)."""
    found: dict[int, tuple[Any, ...]] = {}
    for start in range(0, len(ids), CHUNK):
        query = stmt(ids[start : start + CHUNK])
        for row in conn.execute(query.with_for_update(read=True) if lock else query):
            found[row[0]] = tuple(row[1:])
    return found


def _insert(conn: Connection, table: EventTable, rows: list[dict[str, Any]]) -> int:
    inserted = 0
    if conn.dialect.name in ("mysql", "mariadb"):
        # The hot path: the multi-row INSERT written here, from the rows' known column types
        # (`_values`), and sent without parameters. pymysql's executemany escaped each value
        # through its type dispatch: half of this statement's CPU, the worker's largest single
        # cost (docs/benchmarks.md, worker). Names from the model only.
        head = f"INSERT IGNORE INTO {table.model.__tablename__} ({', '.join(rows[0])}) VALUES "  # noqa: S608
        quote = conn.connection.dbapi_connection.escape  # type: ignore[union-attr]  # the driver's own
        raw = conn.execution_options(no_parameters=True)  # nothing for the driver to %-format
        for start in range(0, len(rows), CHUNK):
            values = ",".join([_values(row, quote) for row in rows[start : start + CHUNK]])
            inserted += max(raw.exec_driver_sql(head + values).rowcount, 0)
        return inserted
    for start in range(0, len(rows), CHUNK):
        result = conn.execute(_ignore(insert(table.model)), rows[start : start + CHUNK])
        inserted += max(result.rowcount, 0)
    return inserted


def _values(row: dict[str, Any], quote: Callable[[str], str]) -> str:
    """One `_rows` row as SQL: its strings quoted by the driver's escaping (`quote`: pymysql's,
    which also honours NO_BACKSLASH_ESCAPES), its ids as integers, its time as pymysql writes a
    datetime (the wall time, UTC here), a missing IP or agent as NULL."""
    event_id, target, contact_id, campaign_id, at, client, reason, ip, agent = row.values()
    return (
        f"({quote(event_id)},{int(target)},{int(contact_id)},{int(campaign_id)},"
        f"'{at.year:04}-{at.month:02}-{at.day:02} {at.hour:02}:{at.minute:02}:{at.second:02}.{at.microsecond:06}',"
        f"{quote(client)},{quote(reason)},{'NULL' if ip is None else quote(ip)},"
        f"{'NULL' if agent is None else quote(agent)})"
    )


class _Replayed(SQLAlchemyError):
    """Fewer rows inserted than offered: some events were stored before (or, in careful
    mode, should not happen: the batch then fails like any database error and is retried)."""


def _stored_already(conn: Connection, table: EventTable, rows: list[dict[str, Any]]) -> set[str]:
    ids = [row["event_id"] for row in rows]
    found: set[str] = set()
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        event_id = table.model.event_id
        found.update(conn.scalars(select(event_id).where(event_id.in_(chunk)).with_for_update()))
    return found


def _owner(pixel: tuple[Any, ...]) -> tuple[int, int, str]:
    """An opening's (contact id, campaign id, consent) from its pixel's row (contact id,
    campaign id, group id, consent)."""
    contact_id, campaign_id, _group_id, tracking = pixel
    return contact_id, campaign_id, tracking


def _consented(
    kept: list[tuple[str, Event]], tracking: Callable[[Event], str], result: IngestResult
) -> tuple[list[tuple[str, Event]], int]:
    """The events whose contact's consent lets them be recorded (`tracking`: the contact's level),
    and how many were not: those of `off` contacts, counted as skipped."""
    allowed = [(eid, e) for eid, e in kept if tracking(e) != OFF]
    refused = len(kept) - len(allowed)
    result.skipped_consent += refused
    return allowed, refused


def _rows(
    table: EventTable, kept: list[tuple[str, Event]], owner: Callable[[Event], tuple[int, int, str]]
) -> list[dict[str, Any]]:
    """The rows of the events kept; `owner` gives an event's (contact id, campaign id, consent).
    An `anonymous` contact's rows keep the class decided from the IP and user agent, not those.
    The key order is the column order of the MariaDB insert (`_values`)."""
    rows = []
    for eid, e in kept:
        contact_id, campaign_id, tracking = owner(e)
        identified = tracking == FULL
        rows.append(
            {
                "event_id": eid,
                table.target.key: e.target_id,
                "contact_id": contact_id,
                "campaign_id": campaign_id,
                table.time.key: _at(e.at_ms),
                "client": e.client,
                "reason": e.reason,
                "ip": (e.ip or None) if identified else None,
                "user_agent": (e.user_agent or None) if identified else None,
            }
        )
    return rows


def _write(
    conn: Connection,
    table: EventTable,
    rows: list[dict[str, Any]],
    offered: int,
    result: IngestResult,
    *,
    careful: bool,
) -> list[dict[str, Any]]:
    """Insert the rows whose target still exists, account for every offered event, and
    return the rows inserted."""
    result.skipped_missing += offered - len(rows)
    if careful and rows:
        seen = _stored_already(conn, table, rows)
        result.duplicates += len(seen)
        rows = [row for row in rows if row["event_id"] not in seen]
    inserted = _insert(conn, table, rows) if rows else 0
    if inserted != len(rows):
        raise _Replayed
    result.inserted += inserted
    return rows


def store_events(
    engine: Engine, events: Sequence[tuple[str, Tracked]], *, rules: ClickRules = DEFAULT_RULES
) -> IngestResult:
    """Insert (event_id, event) pairs in one transaction; returns what happened to them.

    Clicks classified here as a person's go through the scanner timing rules (`rules`:
    app/tracking/click_rules.py).

    The id the event carries (assigned when the load was answered) wins over the given one
    (stream entry id, or the in-process queue's): one load, one row, whichever path stored it.
    """
    started = time.perf_counter()
    tracked = [(e.event_id or eid, _classified(e)) for eid, e in events if isinstance(e, Event)]
    conversions = [_conversion(e) for _, e in events if isinstance(e, ConversionEvent)]
    try:
        result, written = retrying(lambda: _store(engine, tracked, conversions, rules, careful=False), what="ingest")
    except _Replayed:
        result, written = retrying(lambda: _store(engine, tracked, conversions, rules, careful=True), what="ingest")
    _observe(result, written, len(events), time.perf_counter() - started)
    return result


def _conversion(e: ConversionEvent) -> ConversionIn:
    return ConversionIn(
        e.event_id,
        e.campaign_id,
        e.group_id,
        e.contact_id,
        e.name,
        e.value,
        e.currency,
        e.order_id,
        e.source,
        _at(e.at_ms),
        e.link_id or None,
        e.click_event_id or None,
    )


def warm_up() -> None:
    """Load the classifier's rules now (~0.4 s of CPU on the first event otherwise): a worker
    calls it when it starts, before its first batch."""
    classify("Mozilla/5.0", "203.0.113.1")


def classified(e: Tracked) -> Tracked:
    """The event as the ingest stores it: an opening or click with its client class and reason
    (`_classified`), a conversion as it is. The worker classifies while other batches are in flight."""
    return _classified(e) if isinstance(e, Event) else e


def _classified(e: Event) -> Event:
    """The event with its client class and reason: decided here, in batches off the request path
    (classify caches per distinct user agent), unless it came classified (version 2, by hand)."""
    if e.client:
        return e
    verdict = classify(e.user_agent, e.ip, method=e.method, purpose=e.purpose)
    return e._replace(client=verdict.client.value, reason=verdict.reason)


def _store(
    engine: Engine,
    events: list[tuple[str, Event]],
    conversions: list[ConversionIn],
    rules: ClickRules,
    *,
    careful: bool,
) -> tuple[IngestResult, Counter[tuple[str, int, int, str]]]:
    result = IngestResult()
    written: Counter[tuple[str, int, int, str]] = Counter()  # (kind, campaign, group, client) → rows
    opens = [(eid, e) for eid, e in events if e.kind == OPEN]
    clicks = [(eid, e) for eid, e in events if e.kind == CLICK]
    groups: dict[int, int] = {}  # contact → group
    opening_rows: list[dict[str, Any]] = []
    click_rows: list[dict[str, Any]] = []
    # READ COMMITTED: the counters are moved by statements that read the rows just inserted
    # (app/services/counters.add_events), which in REPEATABLE READ would also take gap locks on
    # the openings' unique index and deadlock two workers inserting next to each other. Every
    # read the ingest relies on is a locking read or reads its own rows.
    with read_committed(engine) as conn:
        # The contacts are read with shared locks (and so at their latest committed consent): a
        # PATCH withdrawing consent meanwhile either waits for this batch (and then erases what
        # it stored) or is seen by it.
        if opens:
            pixels = _lookup(
                conn,
                lambda ids: (
                    select(Pixel.id, Contact.id, Contact.campaign_id, Contact.group_id, Contact.tracking)
                    .join(Contact, Contact.id == Pixel.contact_id)
                    .where(in_list(Pixel.id, ids))
                ),
                sorted({e.target_id for _, e in opens}),
                lock=True,
            )
            kept = [(eid, e) for eid, e in opens if e.target_id in pixels]
            kept, refused = _consented(kept, lambda e: pixels[e.target_id][3], result)
            rows = _rows(OPENINGS, kept, lambda e: _owner(pixels[e.target_id]))
            opening_rows = _write(conn, OPENINGS, rows, len(opens) - refused, result, careful=careful)
            groups.update((contact, group) for contact, _campaign, group, _tracking in pixels.values())
        if clicks:
            links = _lookup(
                conn,
                lambda ids: select(Link.id, Link.campaign_id, Link.trap).where(in_list(Link.id, ids)),
                sorted({e.target_id for _, e in clicks}),
                lock=careful,
            )
            contacts = _lookup(
                conn,
                lambda ids: select(
                    Contact.id, Contact.campaign_id, Contact.group_id, Contact.sent_at, Contact.tracking
                ).where(in_list(Contact.id, ids)),
                sorted({e.contact_id for _, e in clicks}),
                lock=True,
            )
            kept = [
                (eid, e)
                for eid, e in clicks
                if e.target_id in links
                and e.contact_id in contacts
                and contacts[e.contact_id][0] == links[e.target_id][0]  # contact still in the link's campaign
            ]
            kept, refused = _consented(kept, lambda e: contacts[e.contact_id][3], result)
            rows = _rows(CLICKS, kept, lambda e: (e.contact_id, links[e.target_id][0], contacts[e.contact_id][3]))
            for row in rows:
                click_rules.trap(row, bool(links[row["link_id"]][1]))
                click_rules.after_send(row, contacts[row["contact_id"]][2], rules)
            rescanned = click_rules.burst(conn, rows, rules)
            click_rows = _write(conn, CLICKS, rows, len(clicks) - refused, result, careful=careful)
            groups.update((contact, group) for contact, (_campaign, group, _sent, _tracking) in contacts.items())
        if opening_rows or click_rows:
            # The counters: their group and hour rows are the ones concurrent batches share,
            # locked as late (and so as briefly) as can be ...
            counters.add_events(conn, opening_rows, click_rows)
        if clicks:
            click_rules.refresh(conn, rescanned)
        if conversions:
            result.conversions = store_conversions(conn, conversions, now=datetime.now(UTC))
        # ... but before the feed/webhooks outbox, whose events take their `seq` under the
        # sequence's lock, held to the commit: the one thing every batch waits for, so last.
        outbox.record(conn, opening_rows, click_rows)
    for table, table_rows in ((OPENINGS, opening_rows), (CLICKS, click_rows)):
        for row in table_rows:
            written[(table.kind, row["campaign_id"], groups[row["contact_id"]], row["client"])] += 1
    return result, written


def _observe(result: IngestResult, written: Counter[tuple[str, int, int, str]], size: int, seconds: float) -> None:
    """Metrics per batch (the inserted totals count the rows inserted, per kind and client class)."""
    metrics.BATCH_SIZE.observe(size)
    metrics.INSERT_SECONDS.observe(seconds)
    by_client: Counter[tuple[str, str]] = Counter()  # no campaign/group label: tenants are never labels
    for (kind, _campaign_id, _group_id, client), n in written.items():
        by_client[kind, client] += n
    for (kind, client), n in by_client.items():
        metrics.INSERTED.labels(kind, client).inc(n)
    if result.conversions:
        metrics.INSERTED.labels("conversion", "").inc(result.conversions)  # no client class: a page reported it
    if result.skipped_missing:
        metrics.SKIPPED.labels("event", "missing").inc(result.skipped_missing)
    if result.duplicates:
        metrics.SKIPPED.labels("event", "duplicate").inc(result.duplicates)
    if result.skipped_consent:
        metrics.SKIPPED.labels("event", "consent").inc(result.skipped_consent)
