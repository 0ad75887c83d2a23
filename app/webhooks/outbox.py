"""The transactional outbox: one `events` row per opening/click the ingest stored, written in the
ingest's own transaction (app/tracking/ingest.py), so an event exists for the feed and the
webhooks iff its opening/click exists.

Per batch and table: one INSERT ... SELECT, which the database builds from the rows just inserted
(found by their unique event id) joined with their contact and campaign; nothing is read back. The
consent rules of SPEC §8 are applied here: an `anonymous` contact's event keeps no contact id and
no pixel id (nothing that names someone); an `off` contact's is not written (nothing is recorded
for it, so there is nothing to tell). The payload itself is built when read (app/webhooks/payload.py).

Each event gets its `seq` as it is written (app/webhooks/sequence.reserve): writing the outbox
takes the sequence's lock until the commit, so the ingest writes it last.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Connection, Insert, Select, case, func, insert, literal, select

from app.models import Campaign, Contact, Event, Tracking
from app.models.tracking import CLICKS, OPENINGS, EventTable
from app.services.sql import by_event_id, force_index, in_list
from app.webhooks import sequence

CHUNK = 1000
_COLUMNS = (
    "event_id",
    "type",
    "owner_id",
    "campaign_id",
    "group_id",
    "contact_id",
    "target_id",
    "client",
    "reason",
    "occurred_at",
    "created_at",
    "seq",
)


def record(conn: Connection, openings: Sequence[dict[str, Any]], clicks: Sequence[dict[str, Any]]) -> int:
    """Write the events of the rows just inserted (the ingest's row dicts); returns how many
    rows were offered. The database builds them from the inserted rows, found by their unique
    event id (as the counters are, app/services/counters/events.py): only the event ids travel,
    and the contacts' group, consent and owner are joined there instead of read back.
    Takes the sequence's lock until the commit: call it last in the transaction."""
    now = datetime.now(UTC)
    offered = len(openings) + len(clicks)
    if not offered:
        return 0
    base = sequence.reserve(conn, offered)
    for table, rows in ((OPENINGS, openings), (CLICKS, clicks)):
        ids = [row["event_id"] for row in rows]
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            conn.execute(_ignore(insert(Event)).from_select(_COLUMNS, _events_of(table, chunk, now, base)))
            base += len(chunk)
    return offered


def _events_of(table: EventTable, event_ids: list[str], now: datetime, base: int) -> Select[Any]:
    """The `events` rows (in _COLUMNS order) of these openings/clicks, numbered from `base` + 1 in
    the order of their rows: not for an `off` contact; an `anonymous` contact's name no contact,
    and no pixel (a link names no one)."""
    model = table.model
    named = Contact.tracking == Tracking.full.value
    target = case((named, table.target), else_=None) if table is OPENINGS else table.target
    query = (
        select(
            model.event_id,
            literal(table.kind),
            Campaign.owner_id,
            model.campaign_id,
            Contact.group_id,
            case((named, model.contact_id), else_=None),
            target,
            model.client,
            model.reason,
            table.time,
            literal(now, type_=Event.created_at.type),
            literal(base, type_=BigInteger) + func.row_number().over(order_by=model.id),
        )
        .join(Contact, Contact.id == model.contact_id)
        .join(Campaign, Campaign.id == model.campaign_id)
        .where(in_list(model.event_id, event_ids), Contact.tracking != Tracking.off.value)
        .order_by(model.id)  # the events in the order of their rows (the feed's order within a batch)
    )
    return force_index(query, model, by_event_id(model))  # as the counters read them


def _ignore(stmt: Insert) -> Insert:
    return stmt.prefix_with("IGNORE", dialect="mysql").prefix_with("OR IGNORE", dialect="sqlite")


def record_conversions(conn: Connection, rows: Sequence[dict[str, Any]], owners: dict[str, int]) -> int:
    """The events of conversions (app/tracking/conversions.store's rows, consent already applied:
    an anonymous contact's has no contact id). IGNORE: a conversion stored before has its event.
    Takes the sequence's lock until the commit: call it last in the transaction."""
    if not rows:
        return 0
    now = datetime.now(UTC)
    base = sequence.reserve(conn, len(rows))
    values = [
        (
            row["event_id"],
            "conversion",
            owners[row["event_id"]],
            row["campaign_id"],
            row["group_id"],
            row["contact_id"],
            row["link_id"],
            "",
            "",
            row["occurred_at"],
            now,
            base + number,
        )
        for number, row in enumerate(rows, start=1)
    ]
    _insert(conn, values)
    return len(values)


def _insert(conn: Connection, values: list[tuple[Any, ...]]) -> None:
    """INSERT IGNORE: a replayed batch (its event ids already there) writes nothing twice."""
    if conn.dialect.name in ("mysql", "mariadb"):
        # As the ingest's own insert: the driver's multi-row INSERT from tuples (app/tracking/ingest._insert).
        columns, marks = ", ".join(_COLUMNS), ", ".join(["%s"] * len(_COLUMNS))
        sql = f"INSERT IGNORE INTO events ({columns}) VALUES ({marks})"  # noqa: S608 (names from this module)
        for start in range(0, len(values), CHUNK):
            conn.exec_driver_sql(sql, values[start : start + CHUNK])
        return
    stmt = insert(Event).prefix_with("OR IGNORE", dialect="sqlite")
    for start in range(0, len(values), CHUNK):
        conn.execute(stmt, [dict(zip(_COLUMNS, value, strict=True)) for value in values[start : start + CHUNK]])
