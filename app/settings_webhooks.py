"""Settings of events out (webhooks and the event feed, docs/webhooks.md): a base of `Settings`
(app/settings.py), so they are read, documented and checked with every other variable."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WebhookSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", use_attribute_docstrings=True)

    webhook_batch_max: int = Field(default=100, ge=1, le=1000)
    """Events per webhook delivery (`{"type": "events", "data": [...]}`)."""
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    """A receiver answering slower than this counts as a failed attempt (retried)."""
    webhook_retry_hours: float = Field(default=24.0, gt=0, le=24 * 14)
    """A batch is retried (exponential backoff with jitter) this long, then marked failed (replayable)."""
    webhook_log_days: int = Field(default=14, ge=1, le=3650)
    """Delivery attempts (`GET /api/v1/webhooks/{id}/deliveries`) and finished batches are kept this many days."""
    webhook_disable_after_days: float = Field(default=5.0, gt=0, le=365)
    """A webhook whose deliveries only failed for this many days is disabled (and says why)."""
    webhook_allow_private: bool = False
    """Allow webhook URLs resolving to loopback, private, link-local or metadata addresses (tests, closed networks)."""
    webhook_lease_seconds: float = Field(default=30.0, gt=0, le=3600)
    """A batch claimed by a dispatcher that died (or lost its database) mid-attempt is sent again, with the same `webhook-id`, this long after the attempt's timeout."""
    webhook_concurrency: int = Field(default=8, ge=1, le=256)
    """Webhooks one dispatcher delivers to at once (each webhook has at most one request in flight)."""
    webhook_poll_seconds: float = Field(default=0.2, gt=0, le=60)
    """How often the dispatcher looks for new events when it is idle."""
    webhook_dispatcher_nice: int = Field(default=19, ge=0, le=19)
    """`pixeltrack dispatcher` lowers its CPU priority by this much (nice) when it starts (19: the lowest): delivery is background work, so on a shared machine the pixel path and the stream consumer keep their CPU under full load, and with spare CPU nothing changes (0: normal priority, where the dispatcher has cores of its own)."""
    events_retention_days: int = Field(default=30, ge=1, le=3650)
    """Feed events (`GET /api/v1/events`) older than this are deleted by the dispatcher."""
