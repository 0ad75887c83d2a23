"""Webhooks (docs/webhooks.md): HTTP only; the rules are in app/services/webhooks.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Response

from app.deps import CurrentUser, IdPath, PageDep, ReadSessionDep, SessionDep, SettingsDep
from app.routing import PrefixRouter, TransactionRoute
from app.schemas.common import Page, UtcDatetime, error_responses, page_of
from app.schemas.webhooks import (
    DeliveryOut,
    PingOut,
    ReplayOut,
    WebhookCreate,
    WebhookOut,
    WebhookSecretOut,
    WebhookUpdate,
)
from app.services import webhooks

router = PrefixRouter(
    prefix="/api/v1", tags=["webhooks"], responses=error_responses(401, 403, 422, 429), route_class=TransactionRoute
)


def _with_secret(webhook: object, secret: str | None) -> WebhookSecretOut:
    out = WebhookOut.model_validate(webhook)
    return WebhookSecretOut(**out.model_dump(), secret=secret)


@router.post("/webhooks", response_model=WebhookSecretOut, status_code=201, responses=error_responses(404))
def create_webhook(body: WebhookCreate, user: CurrentUser, db: SessionDep, settings: SettingsDep) -> WebhookSecretOut:
    """Register a receiver. The answer holds the signing `secret`, shown this once. The URL must
    resolve to public addresses only (422 otherwise, unless WEBHOOK_ALLOW_PRIVATE=true). The webhook
    is sent the events stored from now on (`POST …/replay` sends earlier ones)."""
    webhook, secret = webhooks.create_webhook(db, user, body, settings)
    return _with_secret(webhook, secret)


@router.get("/webhooks", response_model=Page[WebhookOut])
def list_webhooks(user: CurrentUser, db: ReadSessionDep, page: PageDep) -> Page[WebhookOut]:
    """Your webhooks (never their secrets)."""
    items, total = webhooks.list_webhooks(db, user, limit=page.limit, offset=page.offset)
    return page_of(WebhookOut, items, total, limit=page.limit, offset=page.offset)


@router.get("/webhooks/{webhook_id}", response_model=WebhookOut, responses=error_responses(404))
def get_webhook(webhook_id: IdPath, user: CurrentUser, db: SessionDep) -> WebhookOut:
    return WebhookOut.model_validate(webhooks.get_webhook(db, user, webhook_id))


@router.patch("/webhooks/{webhook_id}", response_model=WebhookSecretOut, responses=error_responses(404))
def update_webhook(
    webhook_id: IdPath, body: WebhookUpdate, user: CurrentUser, db: SessionDep, settings: SettingsDep
) -> WebhookSecretOut:
    """Change a webhook; `rotate_secret: true` answers a new `secret` (the old one keeps signing
    beside it for 24 h); `enabled: true` re-enables one that was disabled."""
    webhook = webhooks.get_webhook(db, user, webhook_id)
    secret = webhooks.update_webhook(db, user, webhook, body, settings)
    return _with_secret(webhook, secret)


@router.delete("/webhooks/{webhook_id}", status_code=204, responses=error_responses(404))
def delete_webhook(webhook_id: IdPath, user: CurrentUser, db: SessionDep) -> Response:
    """Delete a webhook with its pending batches and its delivery log."""
    webhooks.delete_webhook(db, webhooks.get_webhook(db, user, webhook_id))
    return Response(status_code=204)


@router.post("/webhooks/{webhook_id}/test", response_model=PingOut, responses=error_responses(404))
def test_webhook(webhook_id: IdPath, user: CurrentUser, db: SessionDep, settings: SettingsDep) -> PingOut:
    """Send one signed `ping` event now; answers with the receiver's status (also logged in the deliveries)."""
    outcome = webhooks.ping(db, webhooks.get_webhook(db, user, webhook_id), settings)
    return PingOut(ok=outcome.ok, status_code=outcome.status_code, duration_ms=outcome.duration_ms, error=outcome.error)


@router.get("/webhooks/{webhook_id}/deliveries", response_model=Page[DeliveryOut], responses=error_responses(404))
def list_deliveries(webhook_id: IdPath, user: CurrentUser, db: ReadSessionDep, page: PageDep) -> Page[DeliveryOut]:
    """The attempt log, newest first (kept WEBHOOK_LOG_DAYS days): no payloads, only what happened."""
    webhook = webhooks.get_webhook(db, user, webhook_id)
    items, total = webhooks.list_deliveries(db, webhook, limit=page.limit, offset=page.offset)
    return page_of(DeliveryOut, items, total, limit=page.limit, offset=page.offset)


@router.post("/webhooks/{webhook_id}/replay", response_model=ReplayOut, responses=error_responses(404))
def replay_webhook(
    webhook_id: IdPath,
    since: Annotated[UtcDatetime, Query(description="Send again the events stored since then.")],
    user: CurrentUser,
    db: SessionDep,
) -> ReplayOut:
    """Send the webhook's events stored since `since` again, in new batches (failed ones included);
    receivers dedupe by event `id`."""
    webhook = webhooks.get_webhook(db, user, webhook_id)
    return ReplayOut(since=since, events=webhooks.replay(db, webhook, since))
