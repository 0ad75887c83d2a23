"""The send sheet: one row per selected contact with its pixel and its tracked URL of every
campaign link, for campaign tools that fill in their own templates. CSV or NDJSON, streamed.

Missing pixels are created a chunk at a time as the render creates them (app/services/sendprep.py).
Contacts whose tracking is `off` get empty pixel and link cells. The trap link is not a column
(only the render places it, hidden).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.models import Campaign, Link, Tracking
from app.rendering import ndjson
from app.schemas.render import SheetFormat
from app.services import sendprep
from app.services.export import csv_cell
from app.services.sendprep import Recipient, Selection
from app.tracking.tokens import TokenMinter
from app.tracking.urls import TrackingUrls

COLUMNS = ("contact_id", "email", "name", "scheduled_at", "status", "pixel_url", "pixel_html")


def sheet_links(db: Session, campaign: Campaign) -> list[int]:
    """The campaign's links that get a column (all but the trap link), by id."""
    return list(
        db.scalars(select(Link.id).where(Link.campaign_id == campaign.id, Link.trap.is_(False)).order_by(Link.id))
    )


def header(link_ids: Sequence[int]) -> list[str]:
    return [*COLUMNS, *(f"link_{link_id}" for link_id in link_ids)]


def _cells(contact: Recipient, link_ids: Sequence[int], urls: TrackingUrls, minter: TokenMinter) -> list[Any]:
    cells: list[Any] = [contact.id, contact.email, contact.name, contact.scheduled_at, contact.status]
    if contact.tracking == Tracking.off.value or contact.pixel_id is None:
        return cells + [None] * (2 + len(link_ids))
    pixel = urls.pixel_of(minter.pixel_token(contact.pixel_id))
    clicks = (urls.click_of(minter.click_token(link_id, contact.id)) for link_id in link_ids)
    return [*cells, pixel, urls.img_tag(pixel), *clicks]


def _csv(rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows([csv_cell(value) for value in row] for row in rows)  # RFC 4180, CRLF
    return buffer.getvalue().encode("utf-8")


def _json_value(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def sheet(
    factory: sessionmaker[Session],
    selection: Selection,
    link_ids: Sequence[int],
    urls: TrackingUrls,
    fmt: SheetFormat,
) -> Iterator[bytes]:
    """The sheet in `fmt`, a chunk of contacts at a time (CSV: the header row first)."""
    names = header(link_ids)
    minter = urls.codec.minter()
    pending = (
        _csv([names]) if fmt is SheetFormat.csv else b""
    )  # (sent with the first chunk: see PrimedStreamingResponse)
    for chunk in sendprep.recipients(factory, selection, pixels=True):
        rows = [_cells(contact, link_ids, urls, minter) for contact in chunk]
        if fmt is SheetFormat.csv:
            piece = _csv(rows)
        else:
            lines = (ndjson.dumps(dict(zip(names, map(_json_value, row), strict=True))) for row in rows)
            piece = ("\n".join(lines) + "\n").encode("utf-8")
        yield pending + piece
        pending = b""
    if pending:
        yield pending
