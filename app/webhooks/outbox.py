"""The transactional outbox: one `events` row per opening/click the ingest stored, written in the
ingest's own transaction (app/tracking/ingest.py), so an event exists for the feed and the
webhooks iff its opening/click exists.

Per batch: one SELECT (the contacts' group, consent and owner) and one multi-row INSERT. The
consent rules of SPEC §8 are applied here: an `anonymous` contact's event keeps no contact id and
no pixel id (nothing that names someone); an `off` contact's is not written (nothing is recorded
for it, so there is nothing to tell). The payload itself is built when read (app/webhooks/payload.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from app.models import Campaign, Contact, Event, Tracking

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
)


def record(conn: Connection, openings: Sequence[dict[str, Any]], clicks: Sequence[dict[str, Any]]) -> int:
    """Write the events of the rows just inserted (the ingest's row dicts); returns how many."""
    if not openings and not clicks:
        return 0
    contact_ids = sorted({row["contact_id"] for row in (*openings, *clicks)})
    who: dict[int, tuple[int, str, int]] = {}  # contact → (group, tracking, owner)
    for start in range(0, len(contact_ids), CHUNK):
        query = (
            select(Contact.id, Contact.group_id, Contact.tracking, Campaign.owner_id)
            .join(Campaign, Campaign.id == Contact.campaign_id)
            .where(Contact.id.in_(contact_ids[start : start + CHUNK]))
        )
        who.update((row[0], (row[1], row[2], row[3])) for row in conn.execute(query))
    now = datetime.now(UTC)
    values: list[tuple[Any, ...]] = []
    for kind, rows, target, time in (
        ("open", openings, "pixel_id", "opened_at"),
        ("click", clicks, "link_id", "clicked_at"),
    ):
        for row in rows:
            found = who.get(row["contact_id"])
            if found is None or found[1] == Tracking.off:
                continue
            group_id, tracking, owner_id = found
            named = tracking == Tracking.full
            values.append(
                (
                    row["event_id"],
                    kind,
                    owner_id,
                    row["campaign_id"],
                    group_id,
                    row["contact_id"] if named else None,
                    row[target] if named or kind == "click" else None,  # a link names no one; a pixel does
                    row["client"],
                    row["reason"],
                    row[time],
                    now,
                )
            )
    if values:
        _insert(conn, values)
    return len(values)


def record_conversions(conn: Connection, rows: Sequence[dict[str, Any]], owners: dict[str, int]) -> int:
    """The events of conversions (app/tracking/conversions.store's rows, consent already applied:
    an anonymous contact's has no contact id). IGNORE: a conversion stored before has its event."""
    now = datetime.now(UTC)
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
        )
        for row in rows
    ]
    if values:
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
