"""Partitioned event streams (issue #16): an event goes to partition `id % STREAM_PARTITIONS`, each
partition's stream and dedupe keys share a hash tag, the API's group commit sends one script call
per partition touched, workers consume all partitions or a `--partitions` subset, and an install
switching from 1 to N partitions loses nothing (the legacy stream is drained). Real redis-server,
both database legs."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app import cli, metrics
from app.clients import sync_redis
from app.main import create_asgi
from app.models import Click, Opening, User
from app.settings import Settings
from app.tracking.events import GROUP, STREAM, Event, KeyScheme, decode, partition_id
from app.tracking.partitions import IDLE_BLOCK_MS, PartitionedWorker, key_scheme, parse_partitions
from app.tracking.queue import MemoryQueue, RedisQueue
from tests import factories
from tests.support.cli_env import cli_environment
from tests.support.processes import wait_until
from tests.support.serve import PIXELTRACK, clean_environ
from tests.support.split_loads import load_targets, rows_per
from tests.support.worker_thread import WorkerThread

FOUR = KeyScheme.of(4)


# -- the scheme and the --partitions syntax --------------------------------------------------


def test_one_partition_on_one_redis_keeps_the_old_key_names() -> None:
    keys = KeyScheme.of(1)
    event = Event("o", 7, 0, 0, "", "", "")
    assert (keys.tagged, keys.streams(), keys.dedupe(event, 0)) == (False, [STREAM], "pt:d:o:7:h")
    assert KeyScheme.of(1, cluster=True).stream(0) == "pt:{p0}:events"
    assert FOUR.partition(event) == 3
    assert (FOUR.stream(3), FOUR.dedupe(event, 3)) == ("pt:{p3}:events", "pt:{p3}:d:o:7:h")


def test_the_url_scheme_or_the_setting_selects_the_cluster_names(settings: Settings) -> None:
    assert key_scheme(settings) == KeyScheme(1, False)
    assert key_scheme(settings.model_copy(update={"redis_url": "redis+cluster://h:7000"})) == KeyScheme(1, True)
    assert key_scheme(settings.model_copy(update={"redis_cluster": True, "stream_partitions": 16})) == KeyScheme(
        16, True
    )


@pytest.mark.parametrize(
    ("spec", "expected"), [("0-7", list(range(8))), ("3", [3]), ("0-3,8", [0, 1, 2, 3, 8]), (" 2 , 1-2", [1, 2])]
)
def test_partition_lists(spec: str, expected: list[int]) -> None:
    assert parse_partitions(spec, 16) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [("16", "does not exist"), ("a", "not a partition"), ("3-1", "empty"), ("", "not a partition"), ("1,", "not")],
)
def test_bad_partition_lists_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_partitions(spec, 16)


def test_the_worker_command_refuses_a_bad_partition_list(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAM_PARTITIONS", "4")
    with cli_environment(monkeypatch, settings):
        assert cli.main(["worker", "--partitions", "2-5"]) == 2
    assert "--partitions: partition 5 does not exist: STREAM_PARTITIONS=4 (0-3)" in capsys.readouterr().err


# -- through the real app and a real Redis ---------------------------------------------------


@pytest.fixture
def app_on(settings: Settings, redis_url: str, redis_client: Any) -> Iterator[Any]:
    """Start the real app on the private Redis with a given number of partitions."""
    clients: list[TestClient] = []

    def start(partitions: int) -> TestClient:
        config = settings.model_copy(update={"redis_url": redis_url, "stream_partitions": partitions})
        client = TestClient(create_asgi(config))
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def test_four_partitions_store_one_opening_per_pixel_and_split(
    app_on: Any, redis_url: str, redis_client: Any, engine: Engine, db: Session, user: User
) -> None:
    pixels, links, contact = factories.make_targets(db, user, 12)
    client = app_on(4)
    load_targets(client, pixels, links, contact, rounds=3)
    for partition, stream in enumerate(FOUR.streams()):  # each event in its own partition's stream
        entries = redis_client.xrange(stream)
        assert entries, f"nothing in {stream}"
        assert {partition_id(decode(fields["e"])) % 4 for _id, fields in entries} == {partition}
    assert not redis_client.exists(STREAM)
    assert redis_client.exists(f"pt:{{p{pixels[0].id % 4}}}:d:o:{pixels[0].id}:h")
    assert PartitionedWorker(sync_redis(redis_url), engine, keys=FOUR, block_ms=10).drain() == 36
    assert rows_per(db, Opening, Opening.pixel_id, [p.id for p in pixels]) == {p.id: 2 for p in pixels}
    assert rows_per(db, Click, Click.link_id, [link.id for link in links]) == {link.id: 1 for link in links}
    assert sum(redis_client.xlen(stream) for stream in FOUR.streams()) == 0


def test_subset_workers_together_store_everything_once(
    app_on: Any, redis_url: str, redis_client: Any, engine: Engine, db: Session, user: User
) -> None:
    pixels, links, contact = factories.make_targets(db, user, 10)
    load_targets(app_on(4), pixels, links, contact, rounds=2)
    low = PartitionedWorker(sync_redis(redis_url), engine, keys=FOUR, partitions=[0, 1], consumer="low")
    high = PartitionedWorker(sync_redis(redis_url), engine, keys=FOUR, partitions=[2, 3], consumer="high")
    assert [w.stream for w in low.workers] == ["pt:{p0}:events", "pt:{p1}:events"]
    with WorkerThread(low) as one, WorkerThread(high) as two:  # type: ignore[arg-type]
        wait_until(lambda: sum(redis_client.xlen(s) for s in FOUR.streams()) == 0, "all partitions consumed")
        one.check()
        two.check()
    expected_low = sum(2 for p in pixels if p.id % 4 < 2) + sum(1 for link in links if link.id % 4 < 2)
    assert (low.stats.inserted, high.stats.inserted) == (expected_low, 30 - expected_low)
    assert rows_per(db, Opening, Opening.pixel_id, [p.id for p in pixels]) == {p.id: 2 for p in pixels}
    assert rows_per(db, Click, Click.link_id, [link.id for link in links]) == {link.id: 1 for link in links}


def test_one_partition_keeps_the_old_keys_through_the_app(
    app_on: Any, redis_url: str, redis_client: Any, engine: Engine, db: Session, user: User
) -> None:
    pixels, links, contact = factories.make_targets(db, user, 3)
    load_targets(app_on(1), pixels, links, contact, rounds=1)
    assert redis_client.xlen(STREAM) == 9
    assert redis_client.exists(f"pt:d:o:{pixels[0].id}:h", f"pt:d:c:{links[0].id}:{contact.id}:h") == 2
    assert not redis_client.keys("pt:{*")
    assert PartitionedWorker(sync_redis(redis_url), engine, keys=KeyScheme.of(1)).drain() == 9


def test_switching_from_one_to_four_partitions_loses_nothing(
    app_on: Any, redis_url: str, redis_client: Any, engine: Engine, db: Session, user: User
) -> None:
    """Entries an API on one partition left in `pt:events` (and one delivered to a worker that died)
    are stored by a four-partition worker, each once; the moved dedupe keys let at most one more
    event per target and split through within the first window."""
    pixels, links, contact = factories.make_targets(db, user, 8)
    load_targets(app_on(1), pixels, links, contact, rounds=2)
    assert redis_client.xlen(STREAM) == 24
    redis_client.xgroup_create(STREAM, GROUP, id="0")
    redis_client.xreadgroup(GROUP, "died", {STREAM: ">"}, count=5)  # delivered, never acknowledged
    worker = PartitionedWorker(sync_redis(redis_url), engine, keys=FOUR, claim_idle_ms=0)
    load_targets(app_on(4), pixels, links, contact, rounds=2)  # the moved keys: one more per target and split
    assert worker.drain() == 48
    assert redis_client.xlen(STREAM) == 0
    assert rows_per(db, Opening, Opening.pixel_id, [p.id for p in pixels]) == {p.id: 4 for p in pixels}
    assert rows_per(db, Click, Click.link_id, [link.id for link in links]) == {link.id: 2 for link in links}
    assert worker.stats.inserted == 48
    worker._legacy_check = 0.0
    worker.run_once(block=False)
    assert worker.legacy is None


def test_the_group_commit_sends_one_call_per_partition(redis_url: str, redis_client: Any, engine: Engine) -> None:
    """Concurrent submits to four partitions: every answer after Redis replied, duplicates refused,
    and a failing partition (its stream key is of the wrong type) falls back for its events only."""
    redis_client.set("pt:{p2}:events", "not a stream")
    events = [Event("o", pixel, 0, 1, "", "1.2.3.4", "ua", f"{pixel:024x}") for pixel in range(1, 41)]

    async def run() -> tuple[list[bool], int]:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        fallback = MemoryQueue(engine, window_seconds=60)
        queue = RedisQueue(client, fallback, window_seconds=60, keys=FOUR)
        calls: list[int] = []
        script = queue._script

        async def counted(**kw: Any) -> Any:
            calls.append(len(kw["keys"]))
            return await script(**kw)

        queue._script = counted  # type: ignore[assignment]
        answers = await asyncio.gather(*(queue.submit(e) for e in events + events[:8]))
        await client.aclose()
        assert calls == [13] * 4  # one call per partition: its stream, 10 events and 2 repeats
        return answers, fallback.pending

    answers, fallen_back = asyncio.run(run())
    assert answers == [True] * 40 + [False] * 8
    assert fallen_back == 10  # partition 2's events, recorded through the fallback
    assert [redis_client.xlen(s) for s in ("pt:{p0}:events", "pt:{p1}:events", "pt:{p3}:events")] == [10] * 3


def test_an_idle_worker_blocks_briefly_on_one_partition_at_a_time(
    redis_url: str, redis_client: Any, engine: Engine
) -> None:
    """Blocking on one partition must not starve the others: with several streams a blocking read
    lasts at most IDLE_BLOCK_MS (one stream alone keeps the configured block)."""
    many = PartitionedWorker(sync_redis(redis_url), engine, keys=FOUR, block_ms=5000)
    assert [w.block_ms for w in many.workers] == [IDLE_BLOCK_MS] * 4
    assert (
        PartitionedWorker(sync_redis(redis_url), engine, keys=KeyScheme.of(1), block_ms=5000).workers[0].block_ms
        == 5000
    )
    redis_client.xadd("pt:{p3}:events", {"e": Event("o", 3, 0, 1, "", "", "").encode()})
    assert many.run_once() == 1  # the non-blocking round finds the event in the last partition


def test_the_stream_gauges_sum_every_partition_and_the_legacy_stream(
    redis_url: str, redis_client: Any, engine: Engine
) -> None:
    worker = PartitionedWorker(sync_redis(redis_url), engine, keys=FOUR, partitions=[0])
    for stream, count in (("pt:{p1}:events", 2), ("pt:{p3}:events", 3), (STREAM, 4)):
        for n in range(count):
            redis_client.xadd(stream, {"e": Event("o", n, 0, 1, "", "", "").encode()})
    worker.update_gauges()
    assert metrics.STREAM_LENGTH._value.get() == 9
    assert metrics.STREAM_LAG._value.get() == 9


@pytest.mark.processes
def test_the_worker_command_consumes_only_its_partitions(
    tmp_path: Path, settings: Settings, engine: Engine, redis_url: str, redis_client: Any
) -> None:
    """`pixeltrack worker --partitions 0-1` as a real process (on the migrated test database):
    partitions 0 and 1 are consumed, 2 and 3 are left to another worker; SIGTERM stops it cleanly."""
    for stream in FOUR.streams():
        redis_client.xadd(stream, {"e": Event("o", 10**9, 0, 1, "", "", "").encode()})  # unknown pixel: skipped
    env = clean_environ(
        DATABASE_URL=settings.sqlalchemy_url,
        REDIS_URL=redis_url,
        STREAM_PARTITIONS="4",
        WORKER_METRICS_PORT="0",
        FERNET_KEY=settings.fernet_keys()[0],
        API_SECRET_KEY=settings.secret_key(),
    )
    command = [str(PIXELTRACK), "worker", "--partitions", "0-1", "--consumer", "low"]
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        consumed = lambda: proc.poll() is not None or [redis_client.xlen(s) for s in FOUR.streams()] == [0, 0, 1, 1]  # noqa: E731
        wait_until(consumed, "partitions 0-1 consumed")
        assert proc.poll() is None, proc.communicate()[0].decode()
        assert [g["consumers"] for s in FOUR.streams()[2:] for g in redis_client.xinfo_groups(s)] == []
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, output
    assert "Traceback" not in output
