"""The cells of the scaling curve (bench/scale_bench.py): one pixel-load cell, one worker cell.

A pixel cell runs `pixeltrack serve --no-worker --workers N` (bench/servers.start_api) against a
Redis (one server or a cluster), loads distinct pixel tokens with wrk (bench/pixel_bench.run_wrk),
then drains what the API enqueued with one `pixeltrack worker` and checks the rows.

A worker cell pre-fills the partition streams with N events, starts `pixeltrack worker`
processes, and times them from the moment the events become readable until every stream is
empty (the worker deletes what it acknowledged). The start is gated so that no process's
start-up is timed: the consumer group is created at the end of each pre-filled stream (`$`),
the workers start and register (they find nothing), then the group is moved back to the start
(`XGROUP SETID 0`) and the last event of each stream is added, which wakes a worker blocked on
that stream. The clock starts there.

CPU: every process's utime + stime from /proc (bench/procstat), read while it is alive, before
and after the timed part; uvicorn's worker processes are counted in the API's tree.
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select, text

from app.models import Opening
from app.services import counters
from app.tracking.events import KeyScheme
from app.tracking.queue import GROUP, STREAM
from bench.pixel_bench import _raw_event, run_wrk
from bench.procstat import cores_busy, machine_busy, tree_cpu, used
from bench.servers import PIXELTRACK, ROOT, start_api, stop


@dataclass
class Backend:
    """One Redis of the run (a server or a cluster) as the cells see it."""

    name: str  # "single Redis" or "3-master cluster"
    url: str  # REDIS_URL for the processes
    client: Any  # a decoded redis-py client (Redis or RedisCluster)
    pids: Callable[[], list[int]]  # the redis-server processes (for their CPU)
    flush: Callable[[], None]  # empty it (our own servers only)
    cluster: bool = False


def streams_of(keys: KeyScheme) -> list[str]:
    """Every stream a worker of this scheme may consume (the legacy one too when tagged)."""
    return keys.streams() + ([STREAM] if keys.tagged else [])


def backlog(client: Any, streams: Sequence[str]) -> int:
    return sum(int(client.xlen(s)) for s in streams)


def wait_drained(
    client: Any, streams: Sequence[str], workers: Sequence[subprocess.Popen[bytes]], timeout: float, left: int = 0
) -> float:
    """Until the streams hold `left` entries (acknowledged ones are deleted); the monotonic time it was seen so."""
    deadline = time.monotonic() + timeout
    while backlog(client, streams) > left:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the workers did not drain the streams within {timeout:.0f} s")
        if any(w.poll() is not None for w in workers):
            raise RuntimeError("a `pixeltrack worker` exited")
        time.sleep(0.01)
    return time.monotonic()


def start_workers(env: dict[str, str], specs: Sequence[str | None], tag: str) -> list[subprocess.Popen[bytes]]:
    """One `pixeltrack worker` per spec (`--partitions SPEC`, or all partitions for None)."""
    procs = []
    for n, spec in enumerate(specs):
        args = [PIXELTRACK, "worker", "--consumer", f"{tag}-{n}", *(["--partitions", spec] if spec else [])]
        procs.append(subprocess.Popen(args, env=env, cwd=ROOT))
    return procs


def check_rows(engine: Engine, expected: int) -> dict[str, Any]:
    """Rows vs what was loaded: each event once (distinct event ids), each pixel once for the loads."""
    with engine.connect() as conn:
        rows = conn.scalar(select(func.count()).select_from(Opening)) or 0
        pixels = conn.scalar(select(func.count(func.distinct(Opening.pixel_id)))) or 0
        events = conn.scalar(select(func.count(func.distinct(Opening.event_id)))) or 0
    return {"expected": expected, "rows": rows, "distinct_pixels": pixels, "distinct_event_ids": events}


def reset(engine: Engine, backend: Backend) -> None:
    """Empty the openings (the report counters rebuilt to zero) and our own Redis."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM openings"))
        counters.rebuild(conn)
    backend.flush()


def cpu_report(before: dict[int, float], after: dict[int, float], per_1k: float) -> dict[str, Any]:
    spent = used(before, after)
    return {
        "cpu_s": round(sum(spent.values()), 2),
        "cpu_s_per_1k": round(sum(spent.values()) / per_1k, 4),
        "per_process_cpu_s": [round(v, 2) for v in spent.values() if v >= 0.05],
    }


def _database_cpu(opts: Any) -> dict[int, float]:
    return {p: v for pid in opts.database_pids() for p, v in tree_cpu(pid).items()}


def _redis_cpu(backend: Backend) -> dict[int, float]:
    return {p: v for pid in backend.pids() for p, v in tree_cpu(pid).items()}


def _warm_up_api(port: int) -> None:
    """A second of /healthz over 8 connections, so that every uvicorn worker process has answered."""
    subprocess.run(
        ["wrk", "-t1", "-c8", "-d1s", f"http://127.0.0.1:{port}/healthz"], capture_output=True, check=True, timeout=30
    )
    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)


def pixel_cell(
    engine: Engine, backend: Backend, env: dict[str, str], api_processes: int, opts: Any, port: int
) -> dict[str, Any]:
    keys = KeyScheme.of(int(env["STREAM_PARTITIONS"]), backend.cluster)
    reset(engine, backend)
    api = start_api(port, env, workers=api_processes)
    try:
        _warm_up_api(port)
        cpu0, redis0 = tree_cpu(api.pid), _redis_cpu(backend)
        rusage0, busy0 = resource.getrusage(resource.RUSAGE_CHILDREN), machine_busy()
        started = time.monotonic()
        settle = 2 if opts.duration >= 6 else 1  # the last seconds only repeat: no new token left in flight
        wrk = run_wrk(opts.tokens_file, opts.duration, opts.connections, opts.threads, port=port, settle=settle)
        wall = time.monotonic() - started
        cpu1, redis1 = tree_cpu(api.pid), _redis_cpu(backend)
        rusage1, busy1 = resource.getrusage(resource.RUSAGE_CHILDREN), machine_busy()
    finally:
        stop(api)
    per_1k = max(1, wrk["requests"]) / 1000
    wrk_cpu = rusage1.ru_utime + rusage1.ru_stime - rusage0.ru_utime - rusage0.ru_stime
    api_cpu = cpu_report(cpu0, cpu1, per_1k)
    redis_cpu = cpu_report(redis0, redis1, per_1k)
    streams = streams_of(keys)
    enqueued = backlog(backend.client, streams)
    drainer = start_workers(env, [None], "scale-drain")
    try:
        wait_drained(backend.client, streams, drainer, opts.drain_timeout)
    finally:
        for w in drainer:
            stop(w)
    check = check_rows(engine, wrk["distinct"])
    check["enqueued"] = enqueued
    check["ok"] = check["rows"] == check["distinct_pixels"] == check["distinct_event_ids"] == wrk["distinct"]
    return {
        "api_processes": api_processes,
        "redis": backend.name,
        "stream_partitions": keys.partitions,
        **{k: wrk[k] for k in ("rps", "requests", "p50_ms", "p99_ms", "distinct", "non_2xx", "socket_errors")},
        "api": api_cpu,
        "redis_cpu": redis_cpu,
        "wrk_cpu_s_per_1k": round(wrk_cpu / per_1k, 4),
        "cores_busy": round((api_cpu["cpu_s"] + redis_cpu["cpu_s"] + wrk_cpu) / wall, 2),
        "machine_cores_busy": round(cores_busy(busy0, busy1), 2),
        "check": check,
    }


def partition_specs(processes: int, partitions: int, layout: str) -> list[str | None]:
    """What each worker process consumes: with one partition, all share it through the consumer
    group; with several, `split` gives each process its own contiguous range, `all` gives every
    process every partition."""
    if partitions == 1 or layout == "all":
        return [None] * processes
    share, extra = divmod(partitions, processes)
    specs: list[str | None] = []
    start = 0
    for n in range(processes):
        size = share + (1 if n < extra else 0)
        specs.append(f"{start}-{start + size - 1}" if size > 1 else str(start))
        start += size
    return specs


def _prefill(client: Any, keys: KeyScheme, pixel_ids: list[int], events: int) -> dict[str, str]:
    """N events into their partition streams, but the last one of each stream (returned, encoded)."""
    now_ms = int(time.time() * 1000)
    last: dict[str, str] = {}
    pipe = client.pipeline(transaction=False)
    pending = 0
    for i in range(events):
        event = _raw_event(i, pixel_ids[i % len(pixel_ids)], now_ms)
        stream = keys.stream(keys.partition(event))
        if stream in last:
            pipe.xadd(stream, {"e": last[stream]})
            pending += 1
        last[stream] = event.encode()
        if pending >= 5000:
            pipe.execute()
            pipe, pending = client.pipeline(transaction=False), 0
    pipe.execute()
    for stream in keys.streams():
        client.xgroup_create(stream, GROUP, id="$", mkstream=True)  # nothing readable yet
    return last


def _registered(client: Any, keys: KeyScheme, specs: Sequence[str | None], tag: str) -> bool:
    names = {f"{tag}-{n}" for n in range(len(specs))}
    seen: set[str] = set()
    for stream in keys.streams():
        seen.update(c["name"] for c in client.xinfo_consumers(stream, GROUP))
    return names <= seen


WARM_CPU_S = 0.3  # a worker's first classification loads the pattern data: ~0.8 s of CPU here


def _warm_up_workers(
    client: Any,
    keys: KeyScheme,
    specs: Sequence[str | None],
    workers: Sequence[subprocess.Popen[bytes]],
    pixel_ids: list[int],
    timeout: float,
) -> int:
    """Events until every worker has classified (and so loaded the pattern data, a one-off cost of
    each process that the curve should not time); returns how many. One event per cold worker and
    round, into its first partition: a worker consuming a stream with others gets it as the client
    blocked longest on it (Redis serves blocked readers in order)."""
    streams = streams_of(keys)
    left = backlog(client, streams)
    cpu0 = [sum(tree_cpu(w.pid).values()) for w in workers]
    sent, now_ms = 0, int(time.time() * 1000)
    for _round in range(20):
        cold = [n for n, w in enumerate(workers) if sum(tree_cpu(w.pid).values()) - cpu0[n] < WARM_CPU_S]
        if not cold:
            break
        for n in cold:
            partition = int((specs[n] or "0").split("-")[0])
            pixel = next(p for p in pixel_ids if p % keys.partitions == partition)  # (id % N)
            event = _raw_event(10**9 + sent, pixel, now_ms)  # (ids of their own: 'w' + 23 hex digits)
            client.xadd(keys.stream(partition), {"e": event.encode()})
            sent += 1
        wait_drained(client, streams, workers, timeout, left=left)
    return sent


def worker_cell(
    engine: Engine,
    backend: Backend,
    env: dict[str, str],
    pixel_ids: list[int],
    processes: int,
    partitions: int,
    opts: Any,
) -> dict[str, Any]:
    keys = KeyScheme.of(partitions, backend.cluster)
    reset(engine, backend)
    last = _prefill(backend.client, keys, pixel_ids, opts.events)
    specs = partition_specs(processes, partitions, opts.layout)
    tag = f"scale-{processes}x{partitions}"
    workers = start_workers({**env, "STREAM_PARTITIONS": str(partitions)}, specs, tag)
    try:
        deadline = time.monotonic() + 60
        while not _registered(backend.client, keys, specs, tag):
            if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                raise RuntimeError("the workers did not start")
            time.sleep(0.02)
        warm = _warm_up_workers(backend.client, keys, specs, workers, pixel_ids, opts.drain_timeout)
        cpu0 = {p: v for w in workers for p, v in tree_cpu(w.pid).items()}
        redis0, db0, busy0 = _redis_cpu(backend), _database_cpu(opts), machine_busy()
        pipe = backend.client.pipeline(transaction=False)
        for stream, encoded in last.items():
            pipe.xgroup_setid(stream, GROUP, id="0")
            pipe.xadd(stream, {"e": encoded})
        started = time.monotonic()
        pipe.execute()
        ended = wait_drained(backend.client, streams_of(keys), workers, opts.drain_timeout)
        cpu1 = {p: v for w in workers for p, v in tree_cpu(w.pid).items()}
        redis1, db1, busy1 = _redis_cpu(backend), _database_cpu(opts), machine_busy()
    finally:
        for w in workers:
            stop(w)
    seconds = ended - started
    per_1k = opts.events / 1000
    worker_cpu = cpu_report(cpu0, cpu1, per_1k)
    redis_cpu = cpu_report(redis0, redis1, per_1k)
    db_cpu = cpu_report(db0, db1, per_1k)
    check = check_rows(engine, opts.events + warm)
    check["warm_up_events"] = warm
    check["ok"] = check["rows"] == check["distinct_event_ids"] == opts.events + warm
    return {
        "processes": processes,
        "partitions": partitions,
        "partitions_per_process": [s or ("0" if partitions == 1 else f"0-{partitions - 1}") for s in specs],
        "events": opts.events,
        "seconds": round(seconds, 3),
        "openings_per_s": round(opts.events / seconds),
        "worker": worker_cpu,
        "redis_cpu": redis_cpu,
        "mariadbd_cpu": db_cpu,
        "cores_busy": round((worker_cpu["cpu_s"] + redis_cpu["cpu_s"] + db_cpu["cpu_s"]) / seconds, 2),
        "machine_cores_busy": round(cores_busy(busy0, busy1), 2),
        "check": check,
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
