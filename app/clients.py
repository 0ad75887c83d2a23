"""The one place Redis clients are made (the API's asyncio client, the worker's sync client)."""

from __future__ import annotations

import redis
import redis.asyncio as aioredis

# Bounded timeouts: a hung Redis must turn into an error (and the degraded path), not a hang.
SOCKET_TIMEOUT = 2.0


def async_redis(dsn: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        dsn,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        health_check_interval=30,
    )


def sync_redis(dsn: str) -> redis.Redis:
    return redis.Redis.from_url(
        dsn,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        health_check_interval=30,
    )
