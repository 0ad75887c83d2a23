"""The contact routes' paths and fields, shared by the contact tests."""

from __future__ import annotations

from typing import Any

from app.models import Group

GROUPS = "/api/v1/groups"
CONTACTS = "/api/v1/contacts"
CONTACT_FIELDS = {
    "id",
    "campaign_id",
    "group_id",
    "email",
    "name",
    "scheduled_at",
    "status",
    "sent_at",
    "tracking",
    "created_at",
    "updated_at",
}


def url(group: Group | int) -> str:
    return f"{GROUPS}/{group if isinstance(group, int) else group.id}/contacts"


def post_raw(client: Any, group: Group, headers: dict[str, str], content: bytes) -> Any:
    return client.post(url(group), headers={**headers, "Content-Type": "application/json"}, content=content)
