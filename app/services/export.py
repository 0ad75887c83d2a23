"""Campaign CSV exports: the openings and the clicks (those of contacts whose tracking consent is
`full`: docs/consent.md) and the conversions (every one; only a `full` contact's names the contact:
docs/conversions.md#reports), streamed in keyset chunks."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.db import read_only
from app.models import Click, Contact, Conversion, Group, Link
from app.models.tracking import CLICKS, OPENINGS, EventTable
from app.services import consent

CSV_CHUNK_ROWS = 5_000

AnySelect = Select[*tuple[Any, ...]]

OPENINGS_CSV_COLUMNS = (
    "opening_id",
    "opened_at",
    "campaign_id",
    "group_id",
    "group_name",
    "contact_id",
    "email",
    "pixel_id",
    "client",
    "ip",
    "user_agent",
    "event_id",
    "reason",
)
CLICKS_CSV_COLUMNS = (
    "click_id",
    "clicked_at",
    "campaign_id",
    "group_id",
    "group_name",
    "contact_id",
    "email",
    "link_id",
    "url",
    "client",
    "ip",
    "user_agent",
    "event_id",
    "reason",
)
CONVERSIONS_CSV_COLUMNS = (
    "conversion_id",
    "occurred_at",
    "campaign_id",
    "group_id",
    "group_name",
    "contact_id",
    "email",
    "name",
    "value",
    "currency",
    "order_id",
    "source",
    "link_id",
    "event_id",
)

# Cells a spreadsheet would run as a formula (OWASP "CSV injection"): =, +, -, @, and tab / CR.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value as written to the CSV: ISO-8601 UTC timestamps, '' for NULL, and text that a
    spreadsheet would take for a formula prefixed with a single quote (shown, not evaluated)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _csv_lines(rows: Sequence[Sequence[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # RFC 4180: quotes fields with commas, quotes or newlines; CRLF
    writer.writerows([csv_cell(v) for v in row] for row in rows)
    return buffer.getvalue().encode("utf-8")


@dataclass(frozen=True)
class _Csv:
    """One export: the event table, its header, and what it adds after the target id (a
    click's URL, with the join that reads it)."""

    table: EventTable
    header: tuple[str, ...]
    target_details: tuple[InstrumentedAttribute[Any], ...] = ()
    joins: tuple[tuple[type[Any], ColumnElement[bool]], ...] = ()


_OPENINGS_CSV = _Csv(OPENINGS, OPENINGS_CSV_COLUMNS)
_CLICKS_CSV = _Csv(CLICKS, CLICKS_CSV_COLUMNS, (Link.url,), ((Link, Link.id == Click.link_id),))


def _chunk(export: _Csv, campaign_id: int, after: tuple[datetime, int] | None) -> AnySelect:
    table, model = export.table, export.table.model
    stmt = (
        select(
            model.id,
            table.time,
            model.campaign_id,
            Contact.group_id,
            Group.name,
            model.contact_id,
            Contact.email,
            table.target,
            *export.target_details,
            model.client,
            model.ip,
            model.user_agent,
            model.event_id,
            model.reason,
        )
        .join(Contact, Contact.id == model.contact_id)
        .join(Group, Group.id == Contact.group_id)
    )
    for entity, on in export.joins:
        stmt = stmt.join(entity, on)
    # The index (campaign_id, opened_at / clicked_at) + the row id. Only the events of contacts
    # whose consent is `full` are listed (docs/consent.md): the others count in the stats only.
    stmt = stmt.where(model.campaign_id == campaign_id, consent.listed()).order_by(table.time, model.id)
    if after is not None:
        at, last_id = after
        stmt = stmt.where(or_(table.time > at, and_(table.time == at, model.id > last_id)))
    return stmt


def _conversions_chunk(campaign_id: int, after: tuple[datetime, int] | None) -> AnySelect:
    c = Conversion
    named = and_(c.contact_id.is_not(None), consent.listed())  # anonymous (then or since): no one
    stmt = (
        select(
            c.id,
            c.occurred_at,
            c.campaign_id,
            c.group_id,
            Group.name,
            case((named, c.contact_id)),
            case((named, Contact.email)),
            c.name,
            c.value,
            c.currency,
            c.order_id,
            c.source,
            c.link_id,
            c.event_id,
        )
        .join(Group, Group.id == c.group_id)
        .outerjoin(Contact, Contact.id == c.contact_id)
        .where(c.campaign_id == campaign_id)  # the index (campaign_id, occurred_at) + the row id
        .order_by(c.occurred_at, c.id)
    )
    if after is not None:
        at, last_id = after
        stmt = stmt.where(or_(c.occurred_at > at, and_(c.occurred_at == at, c.id > last_id)))
    return stmt


def _export(
    session_factory: Callable[[], Session],
    header: Sequence[str],
    chunk: Callable[[tuple[datetime, int] | None], AnySelect],
    chunk_rows: int | None,
) -> Iterator[bytes]:
    """The header, then the rows of `chunk(after)`: (id, time, ...) in (time, id) order."""
    chunk_rows = chunk_rows or CSV_CHUNK_ROWS
    yield _csv_lines([header])
    # Its own session: the request's is closed when the route returns, before the body streams.
    # One transaction for the whole export (a consistent snapshot on MariaDB), read in keyset
    # chunks in time order, so memory stays at one chunk whatever the campaign's size.
    with session_factory() as db:
        read_only(db)
        after: tuple[datetime, int] | None = None
        while True:
            rows = db.execute(chunk(after).limit(chunk_rows)).all()
            if rows:
                yield _csv_lines(rows)
            if len(rows) < chunk_rows:
                return
            after = (rows[-1][1], rows[-1][0])


def export_openings_csv(
    session_factory: Callable[[], Session], campaign_id: int, *, chunk_rows: int | None = None
) -> Iterator[bytes]:
    """The campaign's openings as CSV (header first), in opened_at order."""
    return _export(session_factory, _OPENINGS_CSV.header, lambda a: _chunk(_OPENINGS_CSV, campaign_id, a), chunk_rows)


def export_clicks_csv(
    session_factory: Callable[[], Session], campaign_id: int, *, chunk_rows: int | None = None
) -> Iterator[bytes]:
    """The campaign's clicks as CSV (header first), in clicked_at order."""
    return _export(session_factory, _CLICKS_CSV.header, lambda a: _chunk(_CLICKS_CSV, campaign_id, a), chunk_rows)


def export_conversions_csv(
    session_factory: Callable[[], Session], campaign_id: int, *, chunk_rows: int | None = None
) -> Iterator[bytes]:
    """The campaign's conversions as CSV (header first), in occurred_at order; contact_id and email
    only for a contact whose consent is `full`, empty for the others (they count, naming no one)."""
    return _export(session_factory, CONVERSIONS_CSV_COLUMNS, lambda a: _conversions_chunk(campaign_id, a), chunk_rows)
