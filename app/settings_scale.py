"""Settings of scale-out (docs/scaling.md): partitioned streams, Redis Cluster, read replicas. A base
of `Settings` (app/settings.py), so they are read, documented and checked with every other variable."""

from __future__ import annotations

from typing import Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


class StartupError(RuntimeError):
    """Configuration that must stop the process before it serves anything."""


class ScaleSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", use_attribute_docstrings=True)

    stream_partitions: int = Field(default=1, ge=1, le=1024)
    """Event stream partitions: an event goes to partition `id % N` (e.g. 16 on a Redis Cluster); changing it: docs/scaling.md."""
    redis_cluster: bool = False
    """Use redis-py's cluster client (also implied by a `redis+cluster://host:port,host:port` REDIS_URL)."""
    redis_wait_replicas: int = Field(default=0, ge=0, le=16)
    """After each enqueue, wait until this many replicas have the events (Redis `WAIT`); 0: asynchronous replication."""
    database_replica_url: SecretStr | None = None
    """A read replica of the database: stats, lists, CSV exports and the event feed read from it."""
    replica_sticky_seconds: float = Field(default=5.0, ge=0, le=3600)
    """After a user's write, that user's reads go to the primary for this long (read-your-writes)."""
    replica_max_lag_seconds: float = Field(default=10.0, ge=0, le=86_400)
    """Beyond this replica lag, reads fall back to the primary (and /readyz says so)."""

    @model_validator(mode="after")
    def _cluster_url(self) -> Self:
        # A StartupError, not a ValueError: pydantic's message would echo the URL (and its password).
        problem = redis_cluster_problem(getattr(self, "redis_url", None), self.redis_cluster)
        if problem:
            raise StartupError(f"refusing to start: {problem}")
        return self


def redis_cluster_problem(url: str | None, cluster: bool) -> str | None:
    """What is wrong with a Redis Cluster REDIS_URL (None: nothing, or not a cluster). The message
    never quotes the URL (it may hold a password)."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        if not (cluster or parts.scheme in CLUSTER_SCHEMES):
            return None
        if parts.scheme not in ("redis", "rediss", *CLUSTER_SCHEMES):
            return "a Redis Cluster REDIS_URL must be redis+cluster://, rediss+cluster://, redis:// or rediss://"
        hosts = parts.netloc.rpartition("@")[2]
        nodes = [h.strip() for h in hosts.split(",") if h.strip()]
        if not nodes:
            return "a Redis Cluster REDIS_URL must name at least one node (host:port)"
        for node in nodes:
            urlsplit(f"//{node}").port  # noqa: B018 - raises ValueError on a port out of range / not a number
        if parts.path.strip("/") not in ("", "0"):
            return "a Redis Cluster has only database 0 (REDIS_URL ending in /0 or without a database)"
    except ValueError:
        return "REDIS_URL is not a valid Redis Cluster URL (redis+cluster://host:port,host:port)"
    return None
