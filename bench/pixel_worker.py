"""The stream worker's part of the pixel benchmark (bench/pixel_bench.py, `--worker-only`): a stream
pre-filled with `--stream-events` events (raw facts the worker classifies, or preclassified ones),
drained by 1 then 2 `StreamWorker` processes (what `pixeltrack worker` runs; the report counters
and the events outbox move in the same transactions), timed, with the CPU per event of the workers
and of mariadbd. `--worker-only` writes bench/results/worker-latest.{md,json}.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import resource
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from app import gctune
from app.clients import sync_redis
from app.db import make_engine
from app.services import counters
from app.settings import Settings
from app.tracking.queue import GROUP, STREAM
from app.tracking.worker import DEFAULT_INFLIGHT, StreamWorker
from bench import procstat
from bench.pixel_bench import AGENTS, RESULTS, _raw_event, count_openings, log, seed
from bench.servers import PrivateRedis, fresh_database

SHIPPED_BATCH: int = Settings.model_fields["worker_batch_size"].default  # WORKER_BATCH_SIZE as shipped


def _drain(url: str, redis_url: str, consumer: str, go: Any, inflight: int, batch: int) -> None:
    engine = make_engine(url)
    worker = StreamWorker(sync_redis(redis_url), engine, consumer=consumer, batch_size=batch, inflight=inflight)
    gctune.tune()  # as `pixeltrack worker` does before its loop (ConsumerLoop.run_forever)
    go.wait()
    worker.drain()
    engine.dispose()


def worker_rate(
    engine: Any,
    redis: Any,
    redis_url: str,
    pixel_ids: list[int],
    events: int,
    processes: int,
    *,
    classify: bool,
    inflight: int = DEFAULT_INFLIGHT,
    batch: int = SHIPPED_BATCH,
) -> dict[str, Any]:
    """Openings per second that `processes` stream workers insert from a stream pre-filled with
    `events` (no openings and zero counters before: every contact gets its first opening). With
    `classify`, the events are what the request path records (raw facts: the worker classifies
    them); without, they arrive classified (the baseline: the worker's cost without classifying).
    `inflight`: WORKER_INFLIGHT_BATCHES of each worker, `batch`: its WORKER_BATCH_SIZE (default: the
    shipped default). Also the CPU per event of the worker
    processes and of the system's mariadbd (all of it: on a shared machine, others' queries too)."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM openings"))
        counters.rebuild(conn)
    redis.delete(STREAM)
    now_ms = int(time.time() * 1000)
    pipe = redis.pipeline(transaction=False)
    for i in range(events):
        event = _raw_event(i, pixel_ids[i % len(pixel_ids)], now_ms)
        pipe.xadd(STREAM, {"e": (event if classify else event._replace(client="browser")).encode()})
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    redis.xgroup_create(STREAM, GROUP, id="0")
    url = engine.url.render_as_string(hide_password=False)
    go = multiprocessing.Event()
    workers = [
        multiprocessing.Process(target=_drain, args=(url, redis_url, f"bench-{n}", go, inflight, batch))
        for n in range(processes)
    ]
    for process in workers:
        process.start()
    time.sleep(1)  # (let them connect: the clock starts when they may read)
    mariadbd = procstat.pids_of("mariadbd")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Their CPU so far (connecting, loading the classifier): not the events'.
    setup_cpu = sum(procstat.cpu_seconds(process.pid or 0) for process in workers)
    db_cpu = sum(procstat.cpu_seconds(pid) for pid in mariadbd)
    busy = procstat.machine_busy()
    started = time.perf_counter()
    go.set()
    for process in workers:
        process.join()
    seconds = time.perf_counter() - started
    cores = procstat.cores_busy(busy, procstat.machine_busy())
    db_cpu = sum(procstat.cpu_seconds(pid) for pid in mariadbd) - db_cpu
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)  # (joined: the workers' whole lives)
    worker_cpu = reaped.ru_utime + reaped.ru_stime - children.ru_utime - children.ru_stime - setup_cpu
    rows, _ = count_openings(url)
    rate = round(rows / seconds)
    return {
        "processes": processes,
        "inflight": inflight,
        "batch": batch,
        "classify": classify,
        "rows": rows,
        "seconds": round(seconds, 3),
        "openings_per_s": rate,
        "worker_cpu_us_per_event": _per_event(worker_cpu, rows),
        "mariadbd_cpu_us_per_event": _per_event(db_cpu, rows),
        "cores_busy": round(cores, 2),
    }


def _per_event(seconds: float, rows: int) -> float:
    return round(seconds / max(rows, 1) * 1e6, 1)


WORKER_PHASES: list[tuple[str | int, int, bool]] = [("preclassified_1", 1, False), (1, 1, True), (2, 2, True)]


def worker_phases(
    engine: Any,
    redis: Any,
    redis_url: str,
    pixel_ids: list[int],
    events: int,
    inflight: int = DEFAULT_INFLIGHT,
    batch: int = SHIPPED_BATCH,
) -> dict[str | int, Any]:
    results: dict[str | int, Any] = {}
    for phase, processes, classify in WORKER_PHASES:
        log(f"worker: {processes} process(es) draining {events} events ({classify=}, {inflight=}, {batch=}) ...")
        results[phase] = worker_rate(
            engine, redis, redis_url, pixel_ids, events, processes, classify=classify, inflight=inflight, batch=batch
        )
    return results


def worker_only(tokens: int, events: int, inflight: int = DEFAULT_INFLIGHT, batch: int = SHIPPED_BATCH) -> int:
    """The worker phases alone (no wrk needed): the cost of classifying in the worker."""
    url = fresh_database("pixeltrack_bench")
    log(f"seeding {tokens} contacts and pixels ...")
    pixel_ids = seed(url, tokens)
    private_redis = PrivateRedis()
    engine = make_engine(url)
    workers = worker_phases(
        engine, sync_redis(private_redis.url), private_redis.url, pixel_ids, events, inflight, batch
    )
    engine.dispose()
    private_redis.stop()
    ratio = workers[1]["openings_per_s"] / workers["preclassified_1"]["openings_per_s"]
    lines = [
        "# Worker benchmark: classifying in the worker (latest run)",
        "",
        f"{datetime.now(UTC).isoformat(timespec='seconds')} — {platform.machine()}, {os.cpu_count()} cores; "
        f"{events:,} events per phase over {tokens:,} pixels, {len(AGENTS)} distinct agents; "
        f"batches of {batch:,} (WORKER_BATCH_SIZE{', the shipped default' if batch == SHIPPED_BATCH else ''}), "
        f"{inflight} in flight per worker (WORKER_INFLIGHT_BATCHES); "
        f"load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "| phase | processes | openings/s | rows | worker CPU µs/event | mariadbd CPU µs/event | cores busy |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {'raw facts (worker classifies)' if w['classify'] else 'preclassified (baseline)'} | {w['processes']} "
            f"| {w['openings_per_s']:,} | {w['rows']:,} | {w['worker_cpu_us_per_event']} "
            f"| {w['mariadbd_cpu_us_per_event']} | {w['cores_busy']} |"
            for w in workers.values()
        ],
        "",
        "CPU per event: the worker processes' (after they connected and loaded the classifier) and the "
        "system mariadbd's (all of it: on a shared machine, other clients' queries too); cores busy: "
        "the whole machine's, of 2.",
        "",
        f"Classifying: **{ratio:.3f}x** the baseline's rate in one process; target ≥ 20,000 openings/s in one "
        f"process: **{'met' if workers[1]['openings_per_s'] >= 20_000 else 'not met'}**.",
        "",
    ]
    (RESULTS / "worker-latest.md").write_text("\n".join(lines))
    (RESULTS / "worker-latest.json").write_text(json.dumps({str(k): v for k, v in workers.items()}, indent=2) + "\n")
    print("\n".join(lines))
    return 0
