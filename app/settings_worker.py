"""Settings of the stream worker (`pixeltrack worker`, app/tracking/worker.py) added since the first
ones (WORKER_BATCH_SIZE and its neighbours, app/settings.py): a base of `Settings`, so they are read,
documented and checked with every other variable."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", use_attribute_docstrings=True)

    worker_inflight_batches: int = Field(default=4, ge=1, le=8)
    """Batches whose transaction runs at once in one worker, each on its own connection, while the next is read and classified (1: one batch at a time). Only full batches (WORKER_BATCH_SIZE) overlap: a short one waits for those in flight, gathering what arrives meanwhile."""

    worker_batch_interval_ms: int = Field(default=50, ge=0, le=1000)
    """A short batch (fewer than WORKER_BATCH_SIZE entries) starts at least this long after the worker's previous batch, gathering what arrives meanwhile: under a steady light load one transaction per interval instead of one per handful of events (0: no wait). A full batch, or an event after a pause, goes at once."""
