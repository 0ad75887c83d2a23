"""The public shape of an event (feed items and webhook `data`), built when read.

Consent (SPEC §8): a `full` contact's event names the contact (`contact_id`, `email`, and
`pixel_id`, or `link_id` + `url`); any other event (an `anonymous` contact's, or a contact whose
consent has been lowered since) carries only `id`, `type`, `occurred_at`, `campaign_id`,
`group_id`, `client`, `machine`, `reason`, and for a click `link_id` + `url` (which name no one).
Building it at read time means a changed email or a lowered consent is what is sent, and an
erased contact's events are simply gone.

A `conversion` event (docs/conversions.md) is read with its row of `conversions` (by its
`event_id`, the conversion's key): `name`, `value` (a decimal string, never a float), `currency`,
`order_id`, `source`, `link_id`, and `contact_id` (null unless the contact is `full`: an anonymous
conversion names no one); no client, machine or reason. An event whose conversion is gone (its group
deleted) is not told.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_, bindparam, exists, or_, select

from app.models import MACHINE_CLIENTS, ClientKind, Contact, Conversion, Event, Link, Tracking
from app.models.conversion import VALUE_SCALE
from app.services.sql import force_index

CONVERSION = "conversion"
_VALUE_PLACES = Decimal(1).scaleb(-VALUE_SCALE)
_CONVERSIONS = select(
    Conversion.event_id, Conversion.name, Conversion.value, Conversion.currency, Conversion.order_id, Conversion.source
).where(Conversion.event_id.in_(bindparam("keys", expanding=True)))


def machine(client: str) -> bool | None:
    """True for proxies, scanners and bots; null when the class is `unknown`; else false."""
    if client == ClientKind.unknown:
        return None
    return client in MACHINE_CLIENTS


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def events_query() -> Any:
    """Events with what their payload needs, as plain columns (no ORM objects: the dispatcher reads
    thousands a second); add `where`, `order_by`, `limit`. A conversion's own fields are read
    apart, for the conversions of a batch only (`payloads`): five columns fewer on every row of a
    claim (docs/benchmarks.md, events out); a conversion whose row is gone is left out here."""
    return (
        select(
            Event.seq,
            Event.created_at,
            Event.event_id,
            Event.type,
            Event.occurred_at,
            Event.campaign_id,
            Event.group_id,
            Event.contact_id,
            Event.target_id,
            Event.client,
            Event.reason,
            Contact.email,
            Contact.tracking,
            Link.url,
        )
        .outerjoin(Contact, Contact.id == Event.contact_id)
        .outerjoin(Link, and_(Event.type == "click", Link.id == Event.target_id))
        .where(or_(Event.type != CONVERSION, exists().where(Conversion.event_id == Event.event_id)))
    )


def in_seq_order(stmt: Any, owner_id: int | None, campaign_id: int | None) -> Any:
    """`stmt` over `events` limited to an owner's events (None: everyone's) and, optionally, one
    campaign's, read through the `seq` index that matches. Without the hint MariaDB 10.11 runs
    `owner_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT n` as a lookup on `owner_id` alone
    and walks every earlier event of the owner to reach the range (whenever the query reads a
    column the index lacks): a dispatcher claim or a feed page cost grew with the owner's whole
    history, 2.8 ms at 60,000 events against 0.17 ms as a range (docs/benchmarks.md, events out)."""
    if owner_id is not None:
        stmt = stmt.where(Event.owner_id == owner_id)
    if campaign_id is not None:
        stmt = stmt.where(Event.campaign_id == campaign_id)
        index = "ix_events_campaign_id_seq"
    else:
        index = "uq_events_seq" if owner_id is None else "ix_events_owner_id_seq"
    return force_index(stmt, Event, index)


def decimal_string(value: Decimal | None) -> str | None:
    """A stored value as a decimal string with the column's 4 decimals ("42.5000")."""
    return None if value is None else format(Decimal(value).quantize(_VALUE_PLACES), "f")


def _conversion(event: Any, conversion: Any, out: dict[str, Any], named: bool) -> dict[str, Any]:
    out["contact_id"] = event.contact_id if named else None
    if named:
        out["email"] = event.email
    out["link_id"] = event.target_id
    out["name"] = conversion.name
    out["value"] = decimal_string(conversion.value)
    out["currency"] = conversion.currency
    out["order_id"] = conversion.order_id
    out["source"] = conversion.source
    return out


def payload(event: Any, conversion: Any = None) -> dict[str, Any]:
    """The public event of a row of `events_query` (a conversion's: with its row of `conversions`)."""
    out: dict[str, Any] = {
        "id": event.event_id,
        "type": event.type,
        "occurred_at": _iso(event.occurred_at),
        "campaign_id": event.campaign_id,
        "group_id": event.group_id,
    }
    named = event.contact_id is not None and event.tracking == Tracking.full
    if event.type == CONVERSION:
        return _conversion(event, conversion, out, named)
    if named:
        out["contact_id"] = event.contact_id
        out["email"] = event.email
        if event.type == "open":
            out["pixel_id"] = event.target_id
    if event.type == "click":
        out["link_id"] = event.target_id
        out["url"] = event.url
    out["client"] = event.client
    out["machine"] = machine(event.client)
    out["reason"] = event.reason
    return out


def has_conversions(rows: Sequence[Any]) -> bool:
    return any(row.type == CONVERSION for row in rows)


def read_conversions(conn: Connection, rows: Sequence[Any]) -> dict[str, Any]:
    """The rows of `conversions` of the conversions among rows of `events_query`, by event id
    (their details are read apart; no query without conversions)."""
    keys = [row.event_id for row in rows if row.type == CONVERSION]
    if not keys:
        return {}
    return {conversion.event_id: conversion for conversion in conn.execute(_CONVERSIONS, {"keys": keys})}


def payloads(rows: Sequence[Any], conversions: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The public events of rows of `events_query`, with their conversions' rows
    (`read_conversions`); a conversion whose row has gone since the rows were read is left out."""
    return [
        payload(row, conversions.get(row.event_id))
        for row in rows
        if row.type != CONVERSION or row.event_id in conversions
    ]
