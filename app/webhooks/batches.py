"""The dispatcher's database side: claim a webhook's next batch, record how its attempt went.

A webhook's work is claimed under its row lock (`SELECT … FOR UPDATE SKIP LOCKED` on MariaDB, so
several dispatchers share the webhooks; SQLite has one writer anyway). Its oldest pending batch
goes first; while that batch waits for its next retry, the webhook's newer events wait in the
outbox (per-webhook order and a bounded retry load; other webhooks are not concerned). Otherwise a
new batch takes the next events of the webhook's filter from its `cursor_seq` (events are read by
`seq`: app/webhooks/sequence.py). The claim leases the batch (its `next_attempt_at` moves past the
attempt's longest duration): a dispatcher that dies mid-batch leaves it to be retried, same
`webhook-id`, once the lease ends.
"""

from __future__ import annotations

import functools
import json
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, insert, select, update

from app.db import READ_COMMITTED, connect_read_only, make_engine, read_committed
from app.models import MACHINE_CLIENTS, BatchStatus, Event, Webhook, WebhookBatch, WebhookDelivery
from app.webhooks import sequence
from app.webhooks.delivery import Outcome
from app.webhooks.payload import events_query, in_seq_order

LEASE_MARGIN = timedelta(seconds=30)
BACKOFF_CAP_SECONDS = 2 * 3600.0


@dataclass(frozen=True)
class Claim:
    webhook_id: int
    batch_id: int
    msg_id: str
    attempt: int
    event_ids: list[int]
    url: str
    secrets: list[str]  # sealed: the current one, and the old one during a rotation
    created_at: datetime
    rows: Sequence[Any] | None = None  # a new batch's payload rows (`events_query`), read with the claim


@dataclass(frozen=True)
class Policy:
    batch_max: int
    timeout: float
    retry_hours: float
    disable_after_days: float
    backoff_base: float = 5.0  # seconds before the first retry; doubling, with jitter, up to 2 h
    lease_margin: float = LEASE_MARGIN.total_seconds()  # WEBHOOK_LEASE_SECONDS: past the timeout


def backoff(attempt: int, base: float) -> float:
    """Seconds before attempt `attempt + 1`: base · 2^(attempt-1), capped, jittered to 50-100 %."""
    delay = min(base * 2 ** min(attempt - 1, 40), BACKOFF_CAP_SECONDS)
    return float(delay * random.uniform(0.5, 1.0))


def writer_engine(engine: Engine, pool_size: int, **options: Any) -> Engine:
    """The dispatcher's engine for its claims and records. MariaDB: READ COMMITTED on every new
    connection (not set and reset around each transaction: two round trips), and the lean pool
    (no ping and no ROLLBACK around a connection back within a second: app/db._lean_pool).
    `options`: make_engine's (the database timeouts). SQLite: `engine` itself."""
    if engine.dialect.name not in ("mysql", "mariadb"):
        return engine
    url = engine.url.render_as_string(hide_password=False)
    return make_engine(url, lean_pool=True, isolation_level=READ_COMMITTED, pool_size=pool_size, **options)


# The statements of every claim and record, built once with their parameters bound at execution:
# building them per batch was ~11 % of the dispatcher's CPU (docs/benchmarks.md, events out).
_WEBHOOK = select(Webhook.__table__).where(Webhook.id == bindparam("hook"))
_LOCK = {skip: _WEBHOOK.with_for_update(skip_locked=skip) for skip in (False, True)}
_PENDING = (
    select(
        WebhookBatch.id,
        WebhookBatch.next_attempt_at,
        WebhookBatch.attempts,
        WebhookBatch.msg_id,
        WebhookBatch.created_at,
    )
    .where(WebhookBatch.webhook_id == bindparam("hook"), WebhookBatch.status == BatchStatus.pending)
    .order_by(WebhookBatch.id)
    .limit(1)
)
_BATCH_EVENT_IDS = select(WebhookBatch.event_ids).where(WebhookBatch.id == bindparam("batch"))
_UPDATE_WEBHOOK = update(Webhook).where(Webhook.id == bindparam("hook"))  # SET: the other parameters
_UPDATE_BATCH = update(WebhookBatch).where(WebhookBatch.id == bindparam("batch"))
_INSERT_BATCH = insert(WebhookBatch)
_INSERT_DELIVERY = insert(WebhookDelivery)


def _lock_webhook(conn: Connection, webhook_id: int, *, skip_locked: bool) -> Any:
    """The webhook's row (its columns as attributes), locked until the commit; None if gone (or,
    with `skip_locked`, locked by another dispatcher)."""
    return conn.execute(_LOCK[skip_locked], {"hook": webhook_id}).first()


def matching_events(webhook: Any, stmt: Any = None) -> Any:
    """`stmt` (default: the events' id and seq) restricted to what the webhook asked for."""
    stmt = select(Event.id, Event.seq) if stmt is None else stmt
    stmt = in_seq_order(stmt, webhook.owner_id, webhook.campaign_id)
    stmt = stmt.where(Event.type.in_(webhook.events.split(",")))
    if not webhook.include_machine:
        stmt = stmt.where(Event.client.not_in([kind.value for kind in MACHINE_CLIENTS]))
    return stmt


def next_batch(webhook: Any, high: int, limit: int) -> tuple[Any, dict[str, Any]]:
    """The webhook's next events past its cursor, up to `high`, with their payload's columns (one
    query for the batch, not its ids and then its payload): the statement and its parameters."""
    stmt = _next_batch(webhook.campaign_id is not None, webhook.events, webhook.include_machine, limit)
    params = {"owner": webhook.owner_id, "cursor": webhook.cursor_seq, "high": high}
    return stmt, params if webhook.campaign_id is None else {**params, "campaign": webhook.campaign_id}


@functools.lru_cache(maxsize=256)
def _next_batch(per_campaign: bool, events: str, include_machine: bool, limit: int) -> Any:
    """`next_batch`'s statement for webhooks of this shape (the filter's values are parameters)."""
    shape = SimpleNamespace(
        owner_id=bindparam("owner"),
        campaign_id=bindparam("campaign") if per_campaign else None,
        events=events,
        include_machine=include_machine,
    )
    stmt = matching_events(shape, events_query().add_columns(Event.id))
    return stmt.where(Event.seq > bindparam("cursor"), Event.seq <= bindparam("high")).order_by(Event.seq).limit(limit)


def claim(engine: Engine, webhook_id: int, policy: Policy) -> Claim | None:
    """The webhook's next attempt, leased to the caller; None when there is nothing to send now."""
    with read_committed(engine) as conn:
        webhook = _lock_webhook(conn, webhook_id, skip_locked=conn.dialect.name != "sqlite")
        return _claim_locked(conn, webhook, policy)


def _claim_locked(conn: Connection, webhook: Any, policy: Policy, *, none_pending: bool = False) -> Claim | None:
    """`claim` with the webhook's row locked by the caller's transaction; `none_pending`: the
    caller knows it has no pending batch (its only one was just delivered: a claim makes a new
    batch only when none is pending), so the read for one is skipped."""
    if webhook is None or not webhook.enabled:
        return None
    now = datetime.now(UTC)
    lease = now + timedelta(seconds=policy.timeout + policy.lease_margin)
    batch = None if none_pending else conn.execute(_PENDING, {"hook": webhook.id}).first()
    if batch is not None and batch.next_attempt_at > now:
        return None  # waiting for its retry (or leased to another attempt)
    if batch is None:
        high = sequence.last_seq(conn)
        rows = conn.execute(*next_batch(webhook, high, policy.batch_max)).all()
        cursor = rows[-1].seq if len(rows) == policy.batch_max else high
        if cursor != webhook.cursor_seq:
            conn.execute(_UPDATE_WEBHOOK, {"hook": webhook.id, "cursor_seq": cursor})
        if not rows:
            return None
        ids = [row.id for row in rows]
        msg_id = "msg_" + secrets.token_urlsafe(18)
        attempt, created_at = 1, now
        inserted = conn.execute(
            _INSERT_BATCH,
            {
                "webhook_id": webhook.id,
                "msg_id": msg_id,
                "event_ids": json.dumps(ids),
                "event_count": len(ids),
                "status": BatchStatus.pending.value,
                "attempts": attempt,
                "next_attempt_at": lease,
                "created_at": now,
            },
        ).inserted_primary_key
        batch_id = int((inserted or (0,))[0])
    else:
        rows = None  # a retry: its events are read when it is sent (an erased one drops out)
        batch_id, msg_id, attempt, created_at = batch.id, batch.msg_id, batch.attempts + 1, batch.created_at
        ids = json.loads(conn.scalar(_BATCH_EVENT_IDS, {"batch": batch_id}) or "[]")
        conn.execute(_UPDATE_BATCH, {"batch": batch_id, "attempts": attempt, "next_attempt_at": lease})
    rotating = webhook.old_secret is not None and (webhook.old_secret_until or now) > now
    sealed = [webhook.secret, *([webhook.old_secret] if rotating and webhook.old_secret else [])]
    return Claim(webhook.id, batch_id, msg_id, attempt, ids, webhook.url, sealed, created_at, rows)


def record(
    engine: Engine, claim: Claim, outcome: Outcome, sent: int, policy: Policy, *, then_claim: bool = False
) -> tuple[str, Claim | None]:
    """Log the attempt and move the batch on; returns the outcome logged (delivered, retry, failed,
    gone) and, with `then_claim` after a delivery, the webhook's next claim, made in the same
    transaction (one commit per batch instead of two while a backlog drains)."""
    now = datetime.now(UTC)
    with read_committed(engine) as conn:
        webhook = _lock_webhook(conn, claim.webhook_id, skip_locked=False)
        if webhook is None:
            return "gone", None  # deleted meanwhile: nothing left to account for
        created = claim.created_at
        batch: dict[str, Any] = {}
        hook: dict[str, Any] = {}
        if outcome.ok:
            result = "delivered"
            batch = {"status": BatchStatus.delivered.value, "finished_at": now}
            hook = {"failing_since": None} if webhook.failing_since is not None else {}
        elif outcome.status_code == 410:
            result = "gone"
            batch = {"status": BatchStatus.failed.value, "finished_at": now}
            hook = {"enabled": False, "disabled_reason": "the receiver answered 410 Gone"}
        else:
            retry_at = now + timedelta(seconds=backoff(claim.attempt, policy.backoff_base))
            if retry_at > created + timedelta(hours=policy.retry_hours):
                result = "failed"
                batch = {"status": BatchStatus.failed.value, "finished_at": now}
            else:
                result = "retry"
                batch = {"next_attempt_at": retry_at}
            failing_since = webhook.failing_since or now
            hook = {"failing_since": failing_since}
            if now - failing_since >= timedelta(days=policy.disable_after_days):
                days = f"{policy.disable_after_days:g}"
                hook.update(enabled=False, disabled_reason=f"every delivery failed for {days} days")
        moved = conn.execute(_UPDATE_BATCH, {"batch": claim.batch_id, **batch})
        if moved.rowcount == 0:
            return "gone", None  # the batch was deleted meanwhile
        if hook:
            conn.execute(_UPDATE_WEBHOOK, {"hook": claim.webhook_id, **hook})
        conn.execute(
            _INSERT_DELIVERY,
            {
                "webhook_id": claim.webhook_id,
                "batch_id": claim.batch_id,
                "msg_id": claim.msg_id,
                "attempt": claim.attempt,
                "attempted_at": now,
                "status_code": outcome.status_code,
                "duration_ms": outcome.duration_ms,
                "error": outcome.error,
                "event_count": sent,
                "outcome": result,
            },
        )
        if not (then_claim and result == "delivered"):
            return result, None
        # Still locked; only failing_since changed.
        return result, _claim_locked(conn, webhook, policy, none_pending=True)


def finish_empty(engine: Engine, claim: Claim) -> None:
    """Every event of the batch was erased before it went out: nothing to send."""
    now = datetime.now(UTC)
    with read_committed(engine) as conn:
        conn.execute(
            update(WebhookBatch)
            .where(WebhookBatch.id == claim.batch_id)
            .values(status=BatchStatus.delivered.value, finished_at=now, event_count=0)
        )


def due_webhooks(engine: Engine) -> list[int]:
    """Enabled webhooks with events past their cursor or a pending batch (a cheap read per poll)."""
    now = datetime.now(UTC)
    with connect_read_only(engine) as conn:
        high = sequence.last_seq(conn)
        ahead = select(Webhook.id).where(Webhook.enabled.is_(True), Webhook.cursor_seq < high)
        pending = (
            select(WebhookBatch.webhook_id)
            .join(Webhook, Webhook.id == WebhookBatch.webhook_id)
            .where(
                Webhook.enabled.is_(True),
                WebhookBatch.status == BatchStatus.pending,
                WebhookBatch.next_attempt_at <= now,
            )
            .distinct()
        )
        return sorted(set(conn.scalars(ahead)) | set(conn.scalars(pending)))
