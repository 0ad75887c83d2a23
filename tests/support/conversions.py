"""Shared by the conversion intake tests: a campaign with its origins, attribution tokens, the rows."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Campaign, Contact, Conversion, User
from app.settings import Settings
from app.tracking.attribution import Attribution, AttributionCodec
from app.tracking.events import new_event_id
from tests import factories
from tests.support.app_state import app_state, in_app_loop

SHOP = "https://shop.example"


def codec(settings: Settings) -> AttributionCodec:
    return AttributionCodec(settings.fernet_keys(), lifetime_seconds=settings.attribution_token_seconds())


def shop(db: Session, owner: User, origins: list[str] | None = None, **contact: Any) -> dict[str, Any]:
    """A campaign whose pages at SHOP (or `origins`) may post conversions, with a group, a contact, a link."""
    with factories.one_commit(db):
        campaign = factories.make_campaign(db, owner, conversion_origins=[SHOP] if origins is None else origins)
        group = factories.make_group(db, campaign)
        person = factories.make_contact(db, group, **contact)
        link = factories.make_link(db, campaign)
    return {"campaign": campaign, "group": group, "contact": person, "link": link}


def token(settings: Settings, tree: dict[str, Any], *, anonymous: bool = False, issued_at: int | None = None) -> str:
    contact: Contact = tree["contact"]
    return codec(settings).seal(
        Attribution(
            tree["campaign"].id,
            tree["group"].id,
            0 if anonymous else contact.id,
            tree["link"].id,
            new_event_id(),
            int(time.time()) if issued_at is None else issued_at,
        )
    )


def reload_origins(client: TestClient) -> None:
    in_app_loop(client, app_state(client).intake.origins.reload)


def rows(db: Session, campaign: Campaign | None = None) -> list[tuple[Any, ...]]:
    db.rollback()  # a new read transaction: sees what the ingest committed since
    query = select(
        Conversion.contact_id,
        Conversion.group_id,
        Conversion.name,
        Conversion.value,
        Conversion.currency,
        Conversion.order_id,
        Conversion.source,
    ).order_by(Conversion.id)
    if campaign is not None:
        query = query.where(Conversion.campaign_id == campaign.id)
    return [tuple(row) for row in db.execute(query)]


def purchase(tree: dict[str, Any], order: str | None = "order-1") -> tuple[Any, ...]:
    return (tree["contact"].id, tree["group"].id, "purchase", Decimal("42.5000"), "EUR", order, "browser")


def body(pt: str, **fields: Any) -> dict[str, Any]:
    return {"pt": pt, "name": "purchase", "value": 42.5, "currency": "EUR", "id": "order-1", **fields}
