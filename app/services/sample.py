"""Load a sample/seed file (sample.json format) through the same validation as the API.

Idempotent: a campaign whose name the owner already has is skipped. All or nothing: the load
runs in the caller's one transaction (the CLI's `app.db.session_scope`), which a file failing
half-way rolls back, leaving no trace. Pixels and openings are inserted in bulk
so large files load quickly; `progress` is called after each group with
(contacts done, contacts total).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from pydantic import Field, model_validator
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.models import Campaign, Contact, Opening, Pixel, User
from app.models.base import utcnow
from app.schemas.campaign import CampaignCreate, GroupCreate
from app.schemas.common import InModel
from app.schemas.contact import ContactCreate
from app.schemas.tracking import LinkCreate, OpeningCreate
from app.services import campaigns, contacts, links


def _no_duplicates(values: list[Any], what: str) -> None:
    """Duplicates the database would refuse half-way through a load are refused up front."""
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what}: {value!r}")
        seen.add(value)


class SamplePixel(InModel):
    number: int = Field(default=1, ge=1, le=1000)
    openings: list[OpeningCreate] = []


class SampleContact(ContactCreate):
    pixels: list[SamplePixel] = []

    @model_validator(mode="after")
    def _unique_pixels(self) -> Self:
        _no_duplicates([p.number for p in self.pixels], "pixel number for this contact")
        return self


class SampleGroup(GroupCreate):
    contacts: list[SampleContact] = []

    @model_validator(mode="after")
    def _unique_contacts(self) -> Self:
        _no_duplicates([c.email for c in self.contacts], "contact email in this group")
        return self


class SampleCampaign(CampaignCreate):
    groups: list[SampleGroup] = []
    links: list[LinkCreate] = []

    @model_validator(mode="after")
    def _unique_groups(self) -> Self:
        _no_duplicates([g.name for g in self.groups], "group name in this campaign")
        return self


class SampleFile(InModel):
    campaigns: list[SampleCampaign]

    @model_validator(mode="after")
    def _unique_event_ids(self) -> Self:
        event_ids = [
            o.event_id
            for c in self.campaigns
            for g in c.groups
            for ct in g.contacts
            for p in ct.pixels
            for o in p.openings
            if o.event_id
        ]
        _no_duplicates(event_ids, "opening event_id")
        return self


@dataclass
class LoadResult:
    campaigns: int = 0
    skipped: int = 0
    contacts: int = 0
    pixels: int = 0
    openings: int = 0


def read_sample(path: Path) -> SampleFile:
    return SampleFile.model_validate(json.loads(path.read_text(encoding="utf-8")))


def load_sample(
    db: Session, owner: User, sample: SampleFile, progress: Callable[[int, int], None] | None = None
) -> LoadResult:
    """Flushes only: on an error the caller rolls its transaction back, and nothing is left."""
    result = LoadResult()
    total = sum(len(g.contacts) for c in sample.campaigns for g in c.groups)
    for spec in sample.campaigns:
        exists = db.scalar(select(Campaign.id).where(Campaign.owner_id == owner.id, Campaign.name == spec.name))
        if exists is not None:
            result.skipped += 1
            continue
        campaign = campaigns.create_campaign(db, owner, spec)
        result.campaigns += 1
        for link in spec.links:
            links.create_link(db, campaign, link)
        for group_spec in spec.groups:
            group = campaigns.create_group(db, campaign, group_spec)
            rows = group_spec.contacts
            created = contacts.create_contacts(db, group, rows, row_locs=True) if rows else []
            _insert_pixels(db, created, group_spec.contacts, result)
            result.contacts += len(created)
            if progress:
                progress(result.contacts, total)
    return result


def _insert_pixels(db: Session, created: list[Contact], specs: list[SampleContact], result: LoadResult) -> None:
    pixel_rows: list[dict[str, Any]] = []
    openings_by_uuid: dict[str, tuple[Contact, list[OpeningCreate]]] = {}
    now = utcnow()
    for contact, spec in zip(created, specs, strict=True):
        for pixel in spec.pixels:
            key = uuid.uuid4().hex
            pixel_rows.append({"uuid": key, "contact_id": contact.id, "number": pixel.number, "created_at": now})
            openings_by_uuid[key] = (contact, pixel.openings)
    if not pixel_rows:
        return
    db.execute(insert(Pixel), pixel_rows)
    keys = list(openings_by_uuid)
    ids: dict[str, int] = {}
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        ids.update(db.execute(select(Pixel.uuid, Pixel.id).where(Pixel.uuid.in_(chunk))).all())
    opening_rows = [
        {
            **opening.model_dump(exclude={"event_id"}),
            "opened_at": opening.opened_at or now,
            "event_id": opening.event_id or uuid.uuid4().hex,
            "pixel_id": ids[key],
            "contact_id": contact.id,
            "campaign_id": contact.campaign_id,
        }
        for key, (contact, openings) in openings_by_uuid.items()
        for opening in openings
    ]
    if opening_rows:
        db.execute(insert(Opening), opening_rows)
    result.pixels += len(pixel_rows)
    result.openings += len(opening_rows)
