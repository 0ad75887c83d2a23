"""Settings of scale-out (docs/scaling.md): partitioned streams, Redis Cluster, read replicas. A base
of `Settings` (app/settings.py), so they are read, documented and checked with every other variable."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ScaleSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", use_attribute_docstrings=True)

    stream_partitions: int = Field(default=1, ge=1, le=1024)
    """Event stream partitions: an event goes to partition `id % N` (e.g. 16 on a Redis Cluster); changing it: docs/scaling.md."""
    redis_cluster: bool = False
    """Use redis-py's cluster client (also implied by a `redis+cluster://` REDIS_URL)."""
    redis_wait_replicas: int = Field(default=0, ge=0, le=16)
    """After each enqueue, wait until this many replicas have the events (Redis `WAIT`); 0: asynchronous replication."""
    database_replica_url: SecretStr | None = None
    """A read replica of the database: stats, lists, CSV exports and the event feed read from it."""
    replica_sticky_seconds: float = Field(default=5.0, ge=0, le=3600)
    """After a user's write, that user's reads go to the primary for this long (read-your-writes)."""
    replica_max_lag_seconds: float = Field(default=10.0, ge=0, le=86_400)
    """Beyond this replica lag, reads fall back to the primary (and /readyz says so)."""
