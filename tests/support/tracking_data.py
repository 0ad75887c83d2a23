"""Seeding pixels, pushing stream events and counting what landed (fault tests)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Connection, Engine, Insert, func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from app.models import Campaign, Contact, Group, Opening, Pixel, User
from app.services import counters
from app.tracking.events import OPEN, Event, new_event_id
from app.tracking.queue import GROUP, STREAM


def _inserted_id(conn: Connection, statement: Insert) -> int:
    key = conn.execute(statement).inserted_primary_key
    assert key is not None
    return int(key[0])


def seed_pixels(engine: Engine, n: int) -> list[int]:
    """A user, a campaign, a group and `n` contacts with one pixel each; returns the pixel ids."""
    tag = uuid.uuid4().hex[:10]
    now = datetime.now(UTC)
    with engine.begin() as conn:
        uid = _inserted_id(
            conn, insert(User).values(username=f"fault-{tag}", email=f"{tag}@example.com", hashed_password="x")
        )
        cid = _inserted_id(conn, insert(Campaign).values(owner_id=uid, name=f"faults {tag}"))
        gid = _inserted_id(conn, insert(Group).values(campaign_id=cid, name="A"))
        for start in range(0, n, 5000):
            conn.execute(
                insert(Contact),
                [
                    {"campaign_id": cid, "group_id": gid, "email": f"c{i}-{tag}@example.com", "created_at": now}
                    for i in range(start, min(n, start + 5000))
                ],
            )
        contact_ids = list(conn.scalars(select(Contact.id).where(Contact.campaign_id == cid).order_by(Contact.id)))
        for start in range(0, n, 5000):
            conn.execute(
                insert(Pixel),
                [{"contact_id": c, "number": 1, "uuid": uuid.uuid4().hex} for c in contact_ids[start : start + 5000]],
            )
        pixel_ids = list(
            conn.scalars(
                select(Pixel.id).join(Contact, Contact.id == Pixel.contact_id).where(Contact.campaign_id == cid)
            )
        )
        counters.rebuild(conn, cid)  # rows inserted in bulk: their report counters from scratch
    assert len(pixel_ids) == n
    return sorted(pixel_ids)


def push_events(client: Any, pixel_ids: list[int], n: int, *, with_ids: bool = True) -> int:
    """XADD `n` open events (round robin over the pixels) in pipelined chunks; with_ids=False writes
    the older wire format without an event id (the worker then uses the stream entry id)."""
    now_ms = int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        event_id = new_event_id() if with_ids else ""
        event = Event(OPEN, pixel_ids[i % len(pixel_ids)], 0, now_ms, "browser", "203.0.113.7", "fault-test", event_id)
        pipe.xadd(STREAM, {"e": event.encode()})
        if i % 2000 == 1999:
            pipe.execute()
    pipe.execute()
    return n


def openings(engine: Engine, pixel_ids: list[int]) -> dict[str, Any]:
    """Rows, distinct event ids, and rows per pixel among the given pixels' openings."""
    lo, hi = min(pixel_ids), max(pixel_ids)
    in_range = Opening.pixel_id.between(lo, hi)
    with engine.connect() as conn:
        rows, events = conn.execute(
            select(func.count(), func.count(func.distinct(Opening.event_id))).where(in_range)
        ).one()
        per_pixel = dict(
            conn.execute(select(Opening.pixel_id, func.count()).where(in_range).group_by(Opening.pixel_id)).all()
        )
    return {"rows": rows, "distinct_event_ids": events, "per_pixel": per_pixel}


def row_count(engine: Engine) -> int:
    try:
        with engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(Opening)) or 0
    except SQLAlchemyError:
        return -1


def pending(client: Any) -> int:
    try:
        return int(client.xpending(STREAM, GROUP)["pending"])
    except redis.ResponseError:  # no group yet
        return 0


def held_event_ids(client: Any, consumer: str) -> set[str]:
    """Event ids of the stream entries `consumer` has read and not acknowledged (its pending entries)."""
    held: set[str] = set()
    for entry in client.xpending_range(STREAM, GROUP, "-", "+", 1_000_000, consumername=consumer):
        for _entry_id, fields in client.xrange(STREAM, entry["message_id"], entry["message_id"]):
            held.add(Event.decode(fields["e"]).event_id)
    return held


def stored_event_ids(engine: Engine, event_ids: set[str]) -> dict[str, int]:
    """How many openings each of `event_ids` has (ids without any are left out)."""
    with engine.connect() as conn:
        query = select(Opening.event_id, func.count()).where(Opening.event_id.in_(event_ids))
        rows = conn.execute(query.group_by(Opening.event_id))
        return {str(event_id): int(count) for event_id, count in rows}


def consumer_pending(client: Any, consumer: str) -> int:
    for info in client.xinfo_consumers(STREAM, GROUP):
        if info["name"] == consumer:
            return int(info["pending"])
    return 0


def gauge(base: str, name: str) -> float:
    body = httpx.get(f"{base}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == name:
                total += s.value
    return total
