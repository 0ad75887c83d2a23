"""The event feed (docs/webhooks.md): HTTP only; the rules are in app/services/events.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from app.deps import CurrentUser, ReadSessionDep, SettingsDep
from app.errors import ValidationFailed
from app.models import EventType
from app.models.base import MAX_ID
from app.routing import PrefixRouter, TransactionRoute
from app.schemas.common import error_responses
from app.schemas.webhooks import FeedOut
from app.services import events
from app.webhooks import sequence

router = PrefixRouter(
    prefix="/api/v1", tags=["events"], responses=error_responses(401, 403, 422, 429), route_class=TransactionRoute
)


def sequenced(request: Request) -> None:
    """Number the events committed since the dispatcher last did (cheap when none waits), before
    the request's session takes its snapshot, so the feed is current even without a dispatcher."""
    sequence.assign(request.app.state.engine)


def _types(
    types: Annotated[
        str | None, Query(description="Comma-separated event types (default: all).", examples=["open,click"])
    ] = None,
) -> list[EventType]:
    if not types:
        return []
    try:
        return [EventType(part.strip()) for part in types.split(",") if part.strip()]
    except ValueError:
        msg = "types must be a comma-separated list of open, click, conversion"
        raise ValidationFailed([{"loc": ["query", "types"], "msg": msg, "type": "value_error"}]) from None


@router.get("/events", response_model=FeedOut, response_model_exclude_unset=True)
def list_events(
    _sequenced: Annotated[None, Depends(sequenced)],
    user: CurrentUser,
    db: ReadSessionDep,
    settings: SettingsDep,
    types: Annotated[list[EventType], Depends(_types)],
    after: Annotated[str | None, Query(max_length=200, description="The `next` of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=events.MAX_LIMIT, description="Events per page (at most 1000).")] = 100,
    campaign_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    all: Annotated[bool, Query(description="Admins: every user's events.")] = False,
) -> FeedOut:
    """Your events (opens, clicks, conversions) in commit order, `limit` at a time. Start without
    `after`, then pass the `next` of each page: every stored event comes exactly once, and at the
    end `next` is the cursor to poll with. Fields follow the contact's consent (docs/webhooks.md)."""
    items, next_cursor = events.feed(
        db, user, settings, after=after, limit=limit, types=types, campaign_id=campaign_id, everyone=all
    )
    return FeedOut.model_validate({"items": items, "next": next_cursor})
