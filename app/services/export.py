"""Campaign CSV exports: the openings and the clicks, streamed in keyset chunks."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session

from app.db import read_only
from app.models import Click, Contact, Group, Link, Opening

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


def _openings_chunk(campaign_id: int, after: tuple[datetime, int] | None) -> AnySelect:
    stmt = (
        select(
            Opening.id,
            Opening.opened_at,
            Opening.campaign_id,
            Contact.group_id,
            Group.name,
            Opening.contact_id,
            Contact.email,
            Opening.pixel_id,
            Opening.client,
            Opening.ip,
            Opening.user_agent,
            Opening.event_id,
        )
        .join(Contact, Contact.id == Opening.contact_id)
        .join(Group, Group.id == Contact.group_id)
        .where(Opening.campaign_id == campaign_id)
        .order_by(Opening.opened_at, Opening.id)  # index (campaign_id, opened_at) + the row id
    )
    if after is not None:
        at, last_id = after
        stmt = stmt.where(or_(Opening.opened_at > at, and_(Opening.opened_at == at, Opening.id > last_id)))
    return stmt


def _clicks_chunk(campaign_id: int, after: tuple[datetime, int] | None) -> AnySelect:
    stmt = (
        select(
            Click.id,
            Click.clicked_at,
            Click.campaign_id,
            Contact.group_id,
            Group.name,
            Click.contact_id,
            Contact.email,
            Click.link_id,
            Link.url,
            Click.client,
            Click.ip,
            Click.user_agent,
            Click.event_id,
        )
        .join(Contact, Contact.id == Click.contact_id)
        .join(Group, Group.id == Contact.group_id)
        .join(Link, Link.id == Click.link_id)
        .where(Click.campaign_id == campaign_id)
        .order_by(Click.clicked_at, Click.id)  # index (campaign_id, clicked_at) + the row id
    )
    if after is not None:
        at, last_id = after
        stmt = stmt.where(or_(Click.clicked_at > at, and_(Click.clicked_at == at, Click.id > last_id)))
    return stmt


def _export(
    session_factory: Callable[[], Session],
    header: Sequence[str],
    chunk_query: Callable[[tuple[datetime, int] | None], AnySelect],
    chunk_rows: int | None,
) -> Iterator[bytes]:
    chunk_rows = chunk_rows or CSV_CHUNK_ROWS
    yield _csv_lines([header])
    # Its own session: the request's is closed when the route returns, before the body streams.
    # One transaction for the whole export (a consistent snapshot on MariaDB), read in keyset
    # chunks in time order, so memory stays at one chunk whatever the campaign's size.
    with session_factory() as db:
        read_only(db)
        after: tuple[datetime, int] | None = None
        while True:
            rows = db.execute(chunk_query(after).limit(chunk_rows)).all()
            if rows:
                yield _csv_lines(rows)
            if len(rows) < chunk_rows:
                return
            after = (rows[-1][1], rows[-1][0])


def export_openings_csv(
    session_factory: Callable[[], Session], campaign_id: int, *, chunk_rows: int | None = None
) -> Iterator[bytes]:
    """The campaign's openings as CSV (header first), in opened_at order."""
    return _export(session_factory, OPENINGS_CSV_COLUMNS, lambda after: _openings_chunk(campaign_id, after), chunk_rows)


def export_clicks_csv(
    session_factory: Callable[[], Session], campaign_id: int, *, chunk_rows: int | None = None
) -> Iterator[bytes]:
    """The campaign's clicks as CSV (header first), in clicked_at order."""
    return _export(session_factory, CLICKS_CSV_COLUMNS, lambda after: _clicks_chunk(campaign_id, after), chunk_rows)
