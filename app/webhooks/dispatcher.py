"""`pixeltrack dispatcher`: drains the events outbox to the webhooks (docs/webhooks.md).

Each poll: number the newly committed events (app/webhooks/sequence.py), then give every enabled
webhook with something to send one attempt, in a thread pool of WEBHOOK_CONCURRENCY threads. A
webhook has at most one attempt in flight (in this process by the `busy` set, across dispatchers
by the batch lease: app/webhooks/batches.py), so a slow or dead receiver only ever holds its own
thread and never delays the pixel path, the worker or other webhooks. Several dispatchers may run
(MariaDB: SKIP LOCKED). At least once: a batch is marked delivered only after a 2xx; whatever
stops the dispatcher before that, the batch is sent again with the same `webhook-id`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
from sqlalchemy import Engine, delete, select

from app import gctune, metrics
from app.db import connect_read_only
from app.models import BatchStatus, Event, WebhookBatch, WebhookDelivery
from app.settings import Settings
from app.webhooks import batches, delivery, sequence, signing
from app.webhooks.payload import events_query, has_conversions, payloads, read_conversions

log = logging.getLogger("pixeltrack.dispatcher")

HOUSEKEEPING_SECONDS = 60.0
PURGE_CHUNK = 5000
DRAIN_ATTEMPTS = 50  # attempts in a row for one webhook before its thread is handed on


def body_of(events: list[dict[str, object]]) -> str:
    return json.dumps({"type": "events", "data": events}, separators=(",", ":"), ensure_ascii=False)


class Dispatcher:
    def __init__(
        self, engine: Engine, settings: Settings, *, client: httpx.Client | None = None, backoff_base: float = 5.0
    ) -> None:
        self.engine = engine
        # Claims and records (MariaDB: an engine of their own, READ COMMITTED, lean pool).
        self.writer = batches.writer_engine(engine, settings.webhook_concurrency + 2, **settings.database_timeouts)
        self.settings = settings
        self.client = client or delivery.new_client()
        self.policy = batches.Policy(
            batch_max=settings.webhook_batch_max,
            timeout=settings.webhook_timeout_seconds,
            retry_hours=settings.webhook_retry_hours,
            disable_after_days=settings.webhook_disable_after_days,
            backoff_base=backoff_base,
            lease_margin=settings.webhook_lease_seconds,
        )
        self.pool = ThreadPoolExecutor(settings.webhook_concurrency, thread_name_prefix="webhook")
        self.busy: set[int] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.wake = threading.Event()  # an attempt that sent something ended: poll again now
        self._housekept = 0.0

    def poll(self) -> int:
        """One round: sequence, start an attempt for every due webhook not busy; returns how many started."""
        sequence.assign(self.engine)
        started = 0
        for webhook_id in batches.due_webhooks(self.engine):
            with self.lock:
                if webhook_id in self.busy:
                    continue
                self.busy.add(webhook_id)
            future: Future[bool] = self.pool.submit(self._attempt, webhook_id)
            future.add_done_callback(self._done_callback(webhook_id))
            started += 1
        if time.monotonic() - self._housekept > HOUSEKEEPING_SECONDS:
            self.housekeeping()
        return started

    def _done_callback(self, webhook_id: int) -> Callable[[Future[bool]], None]:
        def done(future: Future[bool]) -> None:
            with self.lock:
                self.busy.discard(webhook_id)
            if not future.cancelled() and future.result():
                self.wake.set()  # more may have been stored meanwhile: sequence and claim them

        return done

    def _attempt(self, webhook_id: int) -> bool:
        try:
            return self.attempt(webhook_id)
        except Exception:
            log.exception("webhook %s: attempt failed; retried at the next poll", webhook_id)
            return False

    def attempt(self, webhook_id: int) -> bool:
        """Send the webhook's due batches, one after the other: a bounded run (DRAIN_ATTEMPTS), so
        other webhooks get the thread too. Returns whether anything was sent."""
        claim = batches.claim(self.writer, webhook_id, self.policy)
        sent = 0
        while claim is not None and sent < DRAIN_ATTEMPTS and not self.stopping.is_set():
            claim = self.send(claim, then_claim=sent + 1 < DRAIN_ATTEMPTS)
            sent += 1
        return sent > 0

    def send(self, claim: batches.Claim, *, then_claim: bool) -> batches.Claim | None:
        """One attempt of a claimed batch, recorded; the webhook's next claim when asked (and delivered)."""
        rows, conversions = claim.rows, {}
        if rows is None:  # a retry: its events as they are now
            with connect_read_only(self.engine) as conn:
                rows = conn.execute(events_query().where(Event.id.in_(claim.event_ids)).order_by(Event.seq)).all()
                conversions = read_conversions(conn, rows)
        elif has_conversions(rows):  # (a connection only for a batch with conversions)
            with connect_read_only(self.engine) as conn:
                conversions = read_conversions(conn, rows)
        events = payloads(rows, conversions)
        if not events:
            batches.finish_empty(self.writer, claim)
            return batches.claim(self.writer, claim.webhook_id, self.policy) if then_claim else None
        body = body_of(events)
        secrets = [signing.unseal(self.settings, sealed) for sealed in claim.secrets]
        headers = signing.headers(secrets, claim.msg_id, datetime.now(UTC), body)
        outcome = delivery.post(
            self.client,
            claim.url,
            body.encode(),
            headers,
            timeout=self.policy.timeout,
            allow_private=self.settings.webhook_allow_private,
        )
        result, following = batches.record(self.writer, claim, outcome, len(events), self.policy, then_claim=then_claim)
        metrics.WEBHOOK_ATTEMPTS.labels(result).inc()
        if result == "delivered":
            metrics.WEBHOOK_EVENTS.inc(len(events))
            now = datetime.now(UTC)
            for row in rows:
                metrics.WEBHOOK_LAG.observe(max((now - row.created_at).total_seconds(), 0.0))
        return following

    def housekeeping(self) -> None:
        """Drop delivery logs and finished batches past WEBHOOK_LOG_DAYS, feed events past EVENTS_RETENTION_DAYS."""
        self._housekept = time.monotonic()
        now = datetime.now(UTC)
        log_cut = now.timestamp() - self.settings.webhook_log_days * 86400
        event_cut = now.timestamp() - self.settings.events_retention_days * 86400
        log_before = datetime.fromtimestamp(log_cut, UTC)
        event_before = datetime.fromtimestamp(event_cut, UTC)
        for table, where in (
            (WebhookDelivery, WebhookDelivery.attempted_at < log_before),
            (WebhookBatch, (WebhookBatch.created_at < log_before) & (WebhookBatch.status != BatchStatus.pending)),
            (Event, Event.created_at < event_before),
        ):
            while True:
                with self.engine.begin() as conn:
                    ids = list(conn.scalars(select(table.id).where(where).limit(PURGE_CHUNK)))
                    if ids:
                        conn.execute(delete(table).where(table.id.in_(ids)))
                if len(ids) < PURGE_CHUNK:
                    break

    def run(self, *, stop: threading.Event | None = None) -> None:
        """Poll until `stop` is set (or `stop()`); attempts in flight finish before it returns."""
        stop = stop or self.stopping
        while not stop.is_set() and not self.stopping.is_set():
            self.wake.clear()
            try:
                started = self.poll()
            except Exception:
                log.exception("dispatcher poll failed; trying again")
                started = 0
            # Idle until the next poll, or until an attempt that delivered ends (its webhook may
            # have more by then): a busy webhook is not polled every interval but when it is free,
            # so a steady flow waits for one attempt, not for attempt + interval.
            self.wake.wait(self.settings.webhook_poll_seconds if not started else 0.01)
        self.stopping.set()  # drains in flight end after their current attempt
        self.close()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.client.close()
        if self.writer is not self.engine:
            self.writer.dispose()


def run_command(settings: Settings, make_engine: Callable[[Settings], Engine]) -> int:
    """`pixeltrack dispatcher`: run until SIGTERM/SIGINT, then let the attempts in flight finish
    (each is bounded by WEBHOOK_TIMEOUT_SECONDS; one cut short is sent again after its lease)."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.webhook_dispatcher_nice:  # background work: the pixel path first (docs/webhooks.md)
        os.nice(settings.webhook_dispatcher_nice)
    if settings.worker_metrics_port:
        from prometheus_client import REGISTRY

        from app import metrics_server

        token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
        metrics_server.start(settings.worker_metrics_host, settings.worker_metrics_port, REGISTRY, token)
        where = f"http://{settings.worker_metrics_host}:{settings.worker_metrics_port}/metrics"
        print(f"dispatcher metrics: {where}", flush=True)
    dispatcher = Dispatcher(make_engine(settings), settings)

    def stop(_signum: int, _frame: object) -> None:
        dispatcher.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    gctune.tune()  # (app/gctune.py)
    print("dispatcher: delivering stored events to the webhooks", flush=True)
    dispatcher.run()
    dispatcher.engine.dispose()
    return 0
