"""All tables; importing this package registers them on `Base.metadata`."""

from app.models.apikey import ApiKey
from app.models.base import Base
from app.models.campaign import Campaign, Contact, ContactStatus, Group, Tracking
from app.models.conversion import Conversion, ConversionSource
from app.models.stats import OPEN_COLUMNS, CampaignHour, ContactStats, GroupCounts
from app.models.tracking import MACHINE_CLIENTS, Click, ClientKind, Link, Opening, Pixel
from app.models.user import User
from app.models.webhook import (
    BatchStatus,
    Event,
    EventSequence,
    EventType,
    Webhook,
    WebhookBatch,
    WebhookDelivery,
)

__all__ = [
    "MACHINE_CLIENTS",
    "OPEN_COLUMNS",
    "ApiKey",
    "Base",
    "BatchStatus",
    "Campaign",
    "CampaignHour",
    "Click",
    "ClientKind",
    "Contact",
    "ContactStats",
    "ContactStatus",
    "Conversion",
    "ConversionSource",
    "Event",
    "EventSequence",
    "EventType",
    "Group",
    "GroupCounts",
    "Link",
    "Opening",
    "Pixel",
    "Tracking",
    "User",
    "Webhook",
    "WebhookBatch",
    "WebhookDelivery",
]
