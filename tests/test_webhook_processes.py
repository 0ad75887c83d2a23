"""Webhook delivery through faults, with real processes (issue #14, "Tests"): `pixeltrack serve` or
`pixeltrack dispatcher` delivering to a real loopback receiver that verifies every signature with
the Standard Webhooks package, while Redis restarts without its data, the database is killed and
restarted, or the dispatcher is killed mid-batch. Each ends with tests/support/webhook_audit.audit:
every stored event delivered at least once, none invented, signatures valid, the deliveries log
consistent. (The dispatcher's logic under faults, in-process: tests/test_webhook_faults.py.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import Engine, create_engine, text

from app.db import make_engine
from app.migrations import upgrade
from app.settings import Settings
from app.tracking.events import OPEN
from app.tracking.queue import STREAM
from app.tracking.tokens import TokenCodec
from tests.support.mariadb_server import PrivateMariaDB
from tests.support.pixel_loader import PixelLoader
from tests.support.pixeltrack_process import UA, api_server, process_env
from tests.support.processes import free_port, stop_process, wait_until
from tests.support.redis_server import PrivateRedis
from tests.support.tracking_data import pending, seed_pixels
from tests.support.webhook_audit import (
    DISPATCHER_ENV,
    add_webhook,
    audit,
    hold_one_request,
    ok_ids,
    start_dispatcher,
    wait_all_delivered,
)
from tests.support.webhook_receiver import running_receiver
from tests.support.webhooks import ingest

pytestmark = pytest.mark.processes


def prefill(engine: Engine, pixels: list[int], n: int) -> None:
    """`n` openings (browser loads) stored through the ingest, round-robin over the pixels."""
    for start in range(0, n, 500):
        ingest(engine, *[(OPEN, pixels[i % len(pixels)], 0, "browser") for i in range(start, min(n, start + 500))])


def test_redis_restarted_empty_while_loads_are_recorded(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    """`pixeltrack serve` (API, stream consumer and dispatcher) on a private redis-server that is
    killed and replaced by an empty one on the same port while pixels are loaded: the events
    Redis wiped were never stored; every stored one reaches the receiver."""
    pixels = seed_pixels(engine, 3000)
    codec = TokenCodec(settings.fernet_keys())
    server = PrivateRedis(tmp_path / "redis")  # no persistence: a restart comes back empty
    server.start()
    probe = redis.Redis(port=server.port, socket_timeout=2)
    env = process_env(settings, REDIS_URL=server.url, **DISPATCHER_ENV)
    port = free_port()
    paths = [f"/o/{codec.pixel_token(p)}.gif" for p in pixels]
    loader = PixelLoader(port, paths[1:], connections=8)
    dispatcher: subprocess.Popen[bytes] | None = None
    try:
        with running_receiver(hold=threading.Event()) as receiver:
            assert receiver.hold is not None
            receiver.hold.set()
            secret = add_webhook(engine, settings, pixels[0], receiver.url)
            with api_server(env, port, tmp_path / "serve.log", tmp_path):
                # The pipeline is up (API, stream consumer, dispatcher) before the load starts.
                assert httpx.get(f"http://127.0.0.1:{port}{paths[0]}", headers={"User-Agent": UA}).status_code == 200
                wait_until(lambda: ok_ids(receiver), "the first load delivered", timeout=30)
                loader.start()
                wait_until(lambda: len(loader.acked) >= 600, "loads acknowledged")
                server.kill()  # every key and the stream with it: a restart without data
                server.start()  # same port, empty
                mark = len(loader.acked)
                wait_until(lambda: len(loader.acked) >= mark + 600 or loader.exhausted(), "loads after the restart")
                loader.stop()
                assert not loader.exhausted(), "ran out of pixels: the restart was not under load"
                wait_until(lambda: pending(probe) == 0 and probe.xlen(STREAM) == 0, "the stream drained")
                delivered_by_serve = len(ok_ids(receiver))
            # serve has stopped (its in-process queue flushed, its dispatcher stopped after its attempt):
            # a dispatcher of its own delivers whatever is left.
            dispatcher = start_dispatcher(env, tmp_path / "dispatcher.log", tmp_path)
            wait_all_delivered(engine, receiver, dispatcher, timeout=40)
            stop_process(dispatcher)
            result = audit(engine, receiver, secret)
        print(
            f"\n[redis] {len(loader.acked)} loads acknowledged ({mark} before the restart), "
            f"{result.stored} stored, {delivered_by_serve} delivered by serve's dispatcher; "
            f"{result.requests} requests, {result.batches} batches, resent {len(result.resent)}"
        )
        assert result.stored > mark, "loads acknowledged after the restart are stored (and delivered) too"
        assert dispatcher.returncode == 0
    finally:
        loader.stop()
        stop_process(dispatcher, signal.SIGKILL)
        probe.close()
        server.stop()


def test_dispatcher_killed_mid_batch_a_new_one_sends_it_again(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    """SIGKILL of `pixeltrack dispatcher` while the receiver holds one of its requests; a new
    dispatcher sends that batch again, same `webhook-id`, once its lease ends."""
    pixels = seed_pixels(engine, 200)
    prefill(engine, pixels, 2000)
    env = process_env(settings, **DISPATCHER_ENV)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with running_receiver(hold=threading.Event()) as receiver:
            assert receiver.hold is not None
            receiver.hold.set()
            secret = add_webhook(engine, settings, pixels[0], receiver.url)
            first = start_dispatcher(env, tmp_path / "first.log", tmp_path)
            procs.append(first)
            wait_until(lambda: len(ok_ids(receiver)) >= 300, "the first dispatcher to deliver", timeout=30)
            # It runs at the lowest CPU priority (WEBHOOK_DISPATCHER_NICE, default 19).
            assert os.getpriority(os.PRIO_PROCESS, first.pid) == 19
            hold_one_request(receiver)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            held = receiver.arrived
            receiver.hold.set()  # answered into a closed connection: the dispatcher never saw it
            receiver.wait_for(lambda r: len(r.requests) == held)
            lost = receiver.requests[-1].headers["webhook-id"]
            assert len(ok_ids(receiver)) < 2000, "the first dispatcher had delivered everything"
            second = start_dispatcher(env, tmp_path / "second.log", tmp_path)
            procs.append(second)
            wait_all_delivered(engine, receiver, second, timeout=40)
            stop_process(second)
            result = audit(engine, receiver, secret)
        print(f"\n[kill] batch {lost} lost with its dispatcher; resent {result.resent}")
        assert result.resent.get(lost) == 2, "the batch cut short went out again, under the same webhook-id"
        assert result.attempts[lost] == [(2, "delivered")], "its first attempt was never recorded"
        assert second.returncode == 0
    finally:
        for proc in procs:
            stop_process(proc, signal.SIGKILL)


@pytest.mark.mysql_only  # SQLite is a file of the process: there is no server to restart
def test_mariadb_killed_and_restarted_while_the_dispatcher_delivers(settings: Settings, tmp_path: Path) -> None:
    """A private mariadbd (the shared one is never touched), SIGKILLed while the receiver holds one
    of the dispatcher's requests and restarted on its datadir: the batch whose outcome could not be
    recorded goes out again, events stored after the restart are delivered too, nothing is lost."""
    mariadb = PrivateMariaDB(tmp_path / "mariadb")
    mariadb.install()
    eng: Engine | None = None
    proc: subprocess.Popen[bytes] | None = None
    log = tmp_path / "dispatcher.log"
    try:
        mariadb.start()
        admin = create_engine(mariadb.server_url())
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE pixeltrack_hooks CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
        admin.dispose()
        url = mariadb.server_url("pixeltrack_hooks")
        eng = make_engine(url, connect_args={"connect_timeout": 2})
        upgrade(eng)
        pixels = seed_pixels(eng, 200)
        prefill(eng, pixels, 2000)
        env = process_env(settings, DATABASE_URL=url, **DISPATCHER_ENV)
        with running_receiver(hold=threading.Event()) as receiver:
            assert receiver.hold is not None
            receiver.hold.set()
            secret = add_webhook(eng, settings, pixels[0], receiver.url)
            proc = start_dispatcher(env, log, tmp_path)
            wait_until(lambda: len(ok_ids(receiver)) >= 300, "the dispatcher to deliver", timeout=30)
            hold_one_request(receiver)
            mariadb.kill()
            receiver.hold.set()  # answered: the dispatcher cannot record it
            receiver.wait_for(lambda r: r.arrived == len(r.requests))
            lost = receiver.requests[-1].headers["webhook-id"]
            wait_until(lambda: "attempt failed" in log.read_text(errors="replace"), "the dispatcher to fail recording")
            assert proc.poll() is None, "the dispatcher survives its database going away"
            mariadb.start()  # same datadir and port: InnoDB crash recovery
            prefill(eng, pixels, 500)  # stored after the restart
            wait_all_delivered(eng, receiver, proc, timeout=45)
            stop_process(proc)
            result = audit(eng, receiver, secret)
        print(
            f"\n[mariadb] batch {lost} unrecorded when mariadbd was killed; {result.stored} events, resent {result.resent}"
        )
        assert result.stored == 2500
        assert result.resent.get(lost) == 2
        assert proc.returncode == 0
    finally:
        stop_process(proc, signal.SIGKILL)
        if eng is not None:
            eng.dispose()
        mariadb.stop()
