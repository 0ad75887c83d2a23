"""Webhooks of a user (docs/webhooks.md): create, change, rotate the secret, delete, the delivery
log, replay, and a test ping. Webhooks are their owner's only (an admin's too: another user's
webhook is a 404 to everyone else)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.errors import NotFound, ValidationFailed
from app.models import Campaign, Event, User, Webhook, WebhookDelivery
from app.schemas.webhooks import WebhookCreate, WebhookUpdate
from app.services.common import apply_changes, paginate
from app.settings import Settings
from app.webhooks import delivery, sequence, signing, ssrf
from app.webhooks.batches import matching_events
from app.webhooks.delivery import Outcome

ROTATION_OVERLAP = timedelta(hours=24)


def _invalid(loc: list[str | int], msg: str) -> ValidationFailed:
    return ValidationFailed([{"loc": loc, "msg": msg, "type": "value_error"}])


def _check_url(url: str, settings: Settings) -> None:
    try:
        ssrf.check(url, allow_private=settings.webhook_allow_private)
    except ssrf.UnsafeUrl as exc:
        raise _invalid(["body", "url"], str(exc)) from None


def _own_campaign(db: Session, user: User, campaign_id: int) -> None:
    if db.scalar(select(Campaign.id).where(Campaign.id == campaign_id, Campaign.owner_id == user.id)) is None:
        raise NotFound("Campaign not found.")


def get_webhook(db: Session, user: User, webhook_id: int) -> Webhook:
    webhook = db.scalar(select(Webhook).where(Webhook.id == webhook_id, Webhook.owner_id == user.id))
    if webhook is None:
        raise NotFound("Webhook not found.")
    return webhook


def list_webhooks(db: Session, user: User, *, limit: int, offset: int) -> tuple[Sequence[Webhook], int]:
    stmt = select(Webhook).where(Webhook.owner_id == user.id).order_by(Webhook.id)
    return paginate(db, stmt, limit=limit, offset=offset)


def create_webhook(db: Session, user: User, data: WebhookCreate, settings: Settings) -> tuple[Webhook, str]:
    """The new webhook and its secret (shown once). It is sent the events stored from now on."""
    url = str(data.url)
    _check_url(url, settings)
    if data.campaign_id is not None:
        _own_campaign(db, user, data.campaign_id)
    secret = signing.new_secret()
    webhook = Webhook(
        owner_id=user.id,
        url=url,
        events=",".join(data.events),
        campaign_id=data.campaign_id,
        include_machine=data.include_machine,
        description=data.description,
        secret=signing.seal(settings, secret),
        enabled=True,
        cursor_seq=sequence.last_seq(db.connection()),
    )
    db.add(webhook)
    db.flush()
    return webhook, secret


def update_webhook(db: Session, user: User, webhook: Webhook, patch: WebhookUpdate, settings: Settings) -> str | None:
    """Apply the changes; returns the new secret when one was asked for (`rotate_secret`)."""
    changes = patch.changes()
    rotate = changes.pop("rotate_secret", False)
    if changes.get("url") is not None:
        changes["url"] = str(changes["url"])
        _check_url(changes["url"], settings)
    if changes.get("events") is not None:
        changes["events"] = ",".join(changes["events"])
    if changes.get("campaign_id") is not None:
        _own_campaign(db, user, changes["campaign_id"])
    if changes.get("enabled"):
        changes.update(disabled_reason=None, failing_since=None)
    apply_changes(webhook, changes)
    secret = None
    if rotate:
        secret = signing.new_secret()
        webhook.old_secret, webhook.secret = webhook.secret, signing.seal(settings, secret)
        webhook.old_secret_until = datetime.now(UTC) + ROTATION_OVERLAP
    db.flush()
    return secret


def delete_webhook(db: Session, webhook: Webhook) -> None:
    db.delete(webhook)  # batches, deliveries: ON DELETE CASCADE
    db.flush()


def list_deliveries(db: Session, webhook: Webhook, *, limit: int, offset: int) -> tuple[Sequence[WebhookDelivery], int]:
    stmt = (
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook.id)
        .order_by(WebhookDelivery.attempted_at.desc(), WebhookDelivery.id.desc())
    )
    return paginate(db, stmt, limit=limit, offset=offset)


def replay(db: Session, webhook: Webhook, since: datetime) -> int:
    """Send again the webhook's events stored since `since` (new batches; receivers dedupe by event id)."""
    stored_since = (Event.created_at >= since, Event.seq.is_not(None))
    first = db.scalar(select(func.min(Event.seq)).where(Event.owner_id == webhook.owner_id, *stored_since))
    if first is None or first > webhook.cursor_seq:
        return 0
    count = select(func.count()).select_from(
        matching_events(webhook).where(Event.seq >= first, Event.seq <= webhook.cursor_seq).subquery()
    )
    events = db.scalar(count) or 0
    webhook.cursor_seq = first - 1
    db.flush()
    return events


def ping(db: Session, webhook: Webhook, settings: Settings) -> Outcome:
    """Send one `ping` event now and log the attempt. The request's transaction is committed before
    the receiver is called (SQLite: no write lock held while a slow receiver answers)."""
    url, msg_id = webhook.url, "msg_ping_" + signing.new_secret()[6:22].replace("/", "_").replace("+", "-")
    keys = [signing.unseal(settings, webhook.secret)]
    if webhook.old_secret and webhook.old_secret_until and webhook.old_secret_until > datetime.now(UTC):
        keys.append(signing.unseal(settings, webhook.old_secret))
    webhook_id = webhook.id
    db.commit()
    now = datetime.now(UTC)
    event = {"id": msg_id[4:], "type": "ping", "occurred_at": now.isoformat().replace("+00:00", "Z")}
    body = json.dumps({"type": "events", "data": [event]}, separators=(",", ":"))
    with httpx.Client(follow_redirects=False, trust_env=False) as client:
        outcome = delivery.post(
            client,
            url,
            body.encode(),
            signing.headers(keys, msg_id, now, body),
            timeout=settings.webhook_timeout_seconds,
            allow_private=settings.webhook_allow_private,
        )
    db.add(
        WebhookDelivery(
            webhook_id=webhook_id,
            msg_id=msg_id,
            attempt=1,
            attempted_at=now,
            status_code=outcome.status_code,
            duration_ms=outcome.duration_ms,
            error=outcome.error,
            event_count=1,
            outcome="ping",
        )
    )
    db.flush()
    return outcome
