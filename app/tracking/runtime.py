"""Assemble the tracking path for one API process (called from the app's lifespan)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from app import metrics
from app.breaker import CircuitBreaker
from app.clients import AsyncRedis, async_redis
from app.ratelimit import RateLimiter
from app.settings import Settings
from app.tracking.attribution import AttributionCodec
from app.tracking.click_rules import ClickRules
from app.tracking.intake import Intake
from app.tracking.origins import OriginsCache
from app.tracking.partitions import key_scheme
from app.tracking.queue import EventQueue, MemoryQueue, RedisQueue
from app.tracking.redirect import Attributor, ContactCache
from app.tracking.tokens import TokenCodec
from app.tracking.tracker import LinkCache, Tracker


@dataclass
class TrackingRuntime:
    tracker: Tracker
    memory: MemoryQueue
    redis: AsyncRedis | None
    # Shared by every user of `redis` in this process (queue, rate limiter, /readyz).
    breaker: CircuitBreaker
    limiter: RateLimiter
    intake: Intake  # POST /e, GET /e.gif, GET /t.js

    async def close(self) -> None:
        await self.intake.origins.close()
        await self.tracker.links.close()
        await self.tracker.queue.close()
        if self.redis is not None:
            await self.redis.aclose()


async def start_tracking(settings: Settings, engine: Engine) -> TrackingRuntime:
    memory = MemoryQueue(engine, window_seconds=settings.dedupe_window_seconds, click_rules=ClickRules.of(settings))
    queue: EventQueue = memory
    client = None
    breaker = CircuitBreaker(timeout=settings.redis_call_timeout_seconds, open_for=settings.redis_breaker_open_seconds)
    if settings.redis_dsn:
        client = async_redis(settings.redis_dsn, cluster=settings.redis_cluster)
        queue = RedisQueue(
            client,
            memory,
            window_seconds=settings.dedupe_window_seconds,
            keys=key_scheme(settings),
            breaker=breaker,
            on_degraded=metrics.set_degraded,
            wait_replicas=settings.redis_wait_replicas,
        )
    tracker = Tracker(
        TokenCodec(settings.fernet_keys()),
        queue,
        LinkCache(engine, redis=client),
        attribution=Attributor(
            AttributionCodec(settings.fernet_keys(), lifetime_seconds=settings.attribution_token_seconds()),
            ContactCache(engine),
        ),
        anonymize_ip=settings.anonymize_ip,
        disabled=settings.tracking_disabled,
        respect_dnt=settings.respect_dnt,
    )
    limiter = RateLimiter(client, breaker=breaker)
    intake = Intake(
        AttributionCodec(settings.fernet_keys(), lifetime_seconds=settings.attribution_token_seconds()),
        queue,
        OriginsCache(engine, redis=client, refresh_seconds=settings.conversion_origins_refresh_seconds),
        limiter,
        rate_limit=settings.conversion_rate_limit_per_minute,
        disabled=settings.tracking_disabled,
        respect_dnt=settings.respect_dnt,
    )
    await queue.start()
    await tracker.links.start()
    await intake.origins.start()
    return TrackingRuntime(
        tracker=tracker, memory=memory, redis=client, breaker=breaker, limiter=limiter, intake=intake
    )
