"""The one place Redis clients are made (the API's asyncio client, the worker's sync client).

A plain Redis (`redis://`, `rediss://`, `unix://`) gets redis-py's `Redis`; a Redis Cluster
(REDIS_CLUSTER=true, or a `redis+cluster://` / `rediss+cluster://` URL) gets its `RedisCluster`,
which learns the topology from any node named (`redis+cluster://h1:7000,h2:7000`: several, so
the client starts while one is down), follows MOVED/ASK redirections and refreshes the slot map
after a failover. Either way every call is bounded by the same socket timeouts, and the API's
calls by its circuit breaker (app/breaker.py) too: a failing master, a slot without a master
(CLUSTERDOWN) or a failover in progress become errors of one call, and the caller's fallback
(in-process queue, per-process rate limits), never a hang.

What must hold on a cluster (docs/scaling.md, "Redis Cluster"): every key a command or script
touches is named in it (KEYS), and the keys of one script call or one transaction share a hash
tag (`pt:{p3}:...`: one slot). Pub/sub (app/changefeed.py) uses plain PUBLISH/SUBSCRIBE, which
a cluster forwards to every node.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.cluster import ClusterNode
from redis.exceptions import RedisClusterException, RedisError

# Bounded timeouts: a hung Redis must turn into an error (and the degraded path), not a hang.
SOCKET_TIMEOUT = 2.0

AsyncRedis = aioredis.Redis | aioredis.RedisCluster
SyncRedis = redis.Redis | redis.RedisCluster

# What a Redis call may raise: RedisClusterException (no node serves a slot, the topology cannot
# be read) is not a RedisError; OSError: a socket error redis-py let through.
REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def is_cluster(dsn: str | None, cluster: bool = False) -> bool:
    """Whether this REDIS_URL (with REDIS_CLUSTER) names a Redis Cluster."""
    return bool(dsn) and (cluster or urlsplit(dsn or "").scheme in CLUSTER_SCHEMES)


def cluster_url(dsn: str) -> tuple[str, list[tuple[str, int]]]:
    """A cluster URL as redis-py reads it: the first node's `redis://`/`rediss://` URL (with the
    credentials and options), and the other nodes named (`host:port`, comma-separated)."""
    parts = urlsplit(dsn)
    scheme = CLUSTER_SCHEMES.get(parts.scheme, parts.scheme)
    if scheme not in ("redis", "rediss"):
        raise ValueError("a Redis Cluster URL is redis://, rediss://, redis+cluster:// or rediss+cluster://")
    auth, _, hosts = parts.netloc.rpartition("@")
    first, *others = [h.strip() for h in hosts.split(",") if h.strip()]
    nodes = [_host_port(h) for h in others]
    netloc = f"{auth}@{first}" if auth else first
    rest = parts.path + (f"?{parts.query}" if parts.query else "")
    return f"{scheme}://{netloc}{rest}", nodes


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if text.startswith("[") or not host:  # [::1]:7000, or no port
        parsed = urlsplit(f"//{text}")
        return parsed.hostname or text, parsed.port or 6379
    return host, int(port)


def _options() -> dict[str, Any]:
    return {
        "decode_responses": True,
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": SOCKET_TIMEOUT,
        "health_check_interval": 30,
    }


def async_redis(dsn: str, *, cluster: bool = False) -> AsyncRedis:
    if is_cluster(dsn, cluster):
        url, others = cluster_url(dsn)
        nodes = [AsyncClusterNode(host, port) for host, port in others]
        return aioredis.RedisCluster.from_url(url, startup_nodes=nodes or None, **_options())
    return aioredis.Redis.from_url(dsn, **_options())


def sync_redis(dsn: str, *, cluster: bool = False) -> SyncRedis:
    if is_cluster(dsn, cluster):
        url, others = cluster_url(dsn)
        nodes = [ClusterNode(host, port) for host, port in others]  # type: ignore[no-untyped-call]
        return redis.RedisCluster.from_url(url, startup_nodes=nodes or None, **_options())
    return redis.Redis.from_url(dsn, **_options())


async def ping(client: AsyncRedis) -> None:
    """Raises unless Redis answers: a plain Redis its PING; a cluster PING on every master
    (a replica that is down leaves every slot served, so the service is not degraded)."""
    if isinstance(client, aioredis.RedisCluster):
        await client.execute_command("PING", target_nodes=aioredis.RedisCluster.PRIMARIES)
    else:
        await client.ping()
