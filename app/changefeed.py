"""A Redis pub/sub channel on which API processes tell each other what to drop from their caches.

The in-process caches (links: app/tracking/tracker.LinkCache; credentials: app/authn) drop an
entry at once in the process that changed it, then `publish` the change; every other process
drops it when the message arrives (`start` subscribes before serving, so no change made after it
is missed). While Redis is unreachable nothing arrives: the listener resubscribes every second
and, once subscribed again, the cache drops everything (`on_resubscribe`), since messages
published meanwhile were lost. On a Redis Cluster a PUBLISH reaches the subscribers of every
node; a subscription whose node dies (a master killed: failover) is made again on a live node once
the client has read the new slot map. Without Redis this does nothing: other processes see a change
when their entry expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster

from app.clients import REDIS_ERRORS, AsyncRedis

log = logging.getLogger("pixeltrack.changefeed")


class ChangeFeed:
    def __init__(
        self,
        redis: AsyncRedis | None,
        channel: str,
        *,
        on_message: Callable[[str], None],
        on_resubscribe: Callable[[], None],
        ttl: float,
    ) -> None:
        self._redis = redis
        self.channel = channel
        self._on_message = on_message
        self._on_resubscribe = on_resubscribe
        self._ttl = ttl  # how long other processes may miss a change that could not be published
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None

    async def publish(self, message: str) -> None:
        if self._redis is None:
            return
        try:
            await self._redis.publish(self.channel, message)
        except REDIS_ERRORS:
            log.warning(
                "could not publish on %s; other processes see the change within %.0f s", self.channel, self._ttl
            )

    async def start(self) -> None:
        if self._redis is None:
            return
        await self._subscribe()
        self._listener = asyncio.create_task(self._listen(), name=f"{self.channel} listener")

    async def _subscribe(self, *, again: bool = False) -> bool:
        assert self._redis is not None
        try:
            if isinstance(self._redis, RedisCluster):
                # A cluster client learns the slots on its first command (a subscription is not
                # one); after a failure (its node died: a failover) it reads them afresh, or it
                # would subscribe on the dead node again. Any node hears every PUBLISH.
                await (self._redis.nodes_manager.initialize() if again else self._redis.initialize())
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(self.channel)
        except REDIS_ERRORS:
            return False
        self._pubsub = pubsub
        self._on_resubscribe()  # changes published while we were not subscribed were missed
        return True

    async def _listen(self) -> None:
        while True:
            if self._pubsub is None and not await self._subscribe(again=True):
                await asyncio.sleep(1.0)
                continue
            assert self._pubsub is not None
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except REDIS_ERRORS:
                await self._drop_pubsub()
                continue
            if message is not None:
                data = message.get("data", b"")
                self._on_message(data.decode(errors="replace") if isinstance(data, bytes) else str(data))

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(*REDIS_ERRORS):
                await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # (typed from redis 8)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        await self._drop_pubsub()
