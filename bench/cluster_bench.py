"""Redis Cluster failover and REDIS_WAIT_REPLICAS, measured (issue #16, docs/scaling.md "Redis Cluster").

A private cluster (3 masters + 3 replicas, tests/support/redis_cluster.py) and the API's real event
queue (`RedisQueue`, STREAM_PARTITIONS=16, its circuit breaker) with a fallback that only records
what it is given (the API's in-process queue would write it to the database). `--concurrency`
submitters each submit events of new pixels (no dedupe) one after the other.

1. Latency: `--seconds` of load without faults, WAIT=0 vs REDIS_WAIT_REPLICAS=1: submits/s and the
   p50/p99 of one submit (the time a pixel load waits for its event's durable acknowledgement).
2. Failover: the same load; after 1 s the master of one partition's slot is SIGKILLed; the load goes
   on until its replica is promoted and 1 s more. Then every partition stream is read back:
   acknowledged = submits answered True; lost = acknowledged events neither in a stream nor given
   to the fallback (a master acknowledged them and died before its replica had them). The killed
   node is restarted (it rejoins as a replica) before the next run. `--runs` runs per mode, each
   also with the replication link down for `--lag-ms` before the kill (the master drops its replica's
   connection, CLIENT KILL TYPE replica, and the replica is paused with SIGSTOP so that it cannot
   reconnect until the master is dead): the writes of that window exist on the master only. On
   loopback a healthy replica has every write within microseconds (the bytes sit in its socket
   buffer even while it is paused), so without this the loss window is too short to hit.

Run: `.venv/bin/python -m bench.cluster_bench [--concurrency 64] [--seconds 5] [--runs 3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from app.breaker import CircuitBreaker
from app.clients import async_redis, sync_redis
from app.tracking.events import OPEN, Event, KeyScheme, Tracked, decode, new_event_id
from app.tracking.queue import MemoryQueue, RedisQueue
from tests.support.redis_cluster import PrivateRedisCluster

KEYS = KeyScheme.of(16, cluster=True)


class RecordingFallback:
    """Stands in for the API's MemoryQueue: keeps the ids of the events it is given."""

    def __init__(self) -> None:
        self.ids: set[str] = set()

    def offer(self, event: Tracked) -> bool:
        self.ids.add(event.event_id)
        return True

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class Load:
    def __init__(self) -> None:
        self.acked: set[str] = set()
        self.latencies: list[float] = []
        self.stop = False
        self.next_pixel = 1


async def submitter(queue: RedisQueue, load: Load) -> None:
    while not load.stop:
        await asyncio.sleep(0)  # a request always yields (the fallback path alone would not)
        load.next_pixel += 1
        event = Event(OPEN, load.next_pixel, 0, int(time.time() * 1000), "", "10.0.0.1", "bench", new_event_id())
        started = time.perf_counter()
        if await queue.submit(event):
            load.acked.add(event.event_id)
        load.latencies.append(time.perf_counter() - started)


def stream_ids(cluster: PrivateRedisCluster) -> set[str]:
    client = sync_redis(cluster.url)
    try:
        ids: set[str] = set()
        for stream in KEYS.streams():
            for _entry_id, fields in cast(list[Any], client.xrange(stream)):
                ids.add(decode(fields["e"]).event_id)
        return ids
    finally:
        client.close()


async def run_load(
    cluster: PrivateRedisCluster, wait: int, concurrency: int, seconds: float, kill: bool, lag_ms: int = 0
) -> dict[str, Any]:
    client = async_redis(cluster.url)
    fallback = RecordingFallback()
    queue = RedisQueue(
        client,
        cast(MemoryQueue, fallback),
        window_seconds=600,
        keys=KEYS,
        breaker=CircuitBreaker(timeout=0.5, open_for=2.0),
        wait_replicas=wait,
    )
    await client.initialize()  # the slot map, before the clock starts
    load = Load()
    load.next_pixel = int(time.time() * 1000) * 1000  # new pixels in every run
    result: dict[str, Any] = {"wait_replicas": wait, "concurrency": concurrency, "replica_lag_ms": lag_ms}
    tasks = [asyncio.create_task(submitter(queue, load)) for _ in range(concurrency)]
    started = time.perf_counter()
    if kill:
        await asyncio.sleep(1.0)
        victim = KEYS.stream(0)
        paused = cluster.replicas_of(cluster.slot_owner(victim)) if lag_ms else []
        for replica in paused:  # the replication link goes down (a network blip, a busy host)
            assert replica.proc is not None
            replica.proc.send_signal(signal.SIGSTOP)  # so that it cannot reconnect meanwhile
        if paused:
            master = cluster.slot_owner(victim).client()
            master.execute_command("CLIENT", "KILL", "TYPE", "replica")
            master.close()
        await asyncio.sleep(lag_ms / 1000)
        killed = cluster.kill_master_of(victim)
        for replica in paused:
            assert replica.proc is not None
            replica.proc.send_signal(signal.SIGCONT)
        killed_at = time.perf_counter()
        await asyncio.to_thread(cluster.wait_promoted, victim, killed)
        result["promoted_after_s"] = round(time.perf_counter() - killed_at, 2)
        await asyncio.sleep(1.0)
    else:
        await asyncio.sleep(seconds)
    load.stop = True
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    await queue.close()
    await client.aclose()
    if kill:
        cluster.restart(killed)
        await asyncio.to_thread(cluster.wait_ok)
        stored = stream_ids(cluster)
        result["acknowledged"] = len(load.acked)
        result["to_fallback"] = len(load.acked & fallback.ids)
        result["acknowledged_by_redis"] = len(load.acked - fallback.ids)
        result["lost"] = len(load.acked - stored - fallback.ids)
    latencies = sorted(load.latencies)
    result["submits_per_s"] = round(len(latencies) / elapsed)
    result["p50_ms"] = round(statistics.median(latencies) * 1000, 2)
    result["p99_ms"] = round(latencies[int(len(latencies) * 0.99)] * 1000, 2)
    result["max_ms"] = round(latencies[-1] * 1000, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lag-ms", type=int, default=300, help="how long the replica is paused before the kill")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
        cluster = PrivateRedisCluster(Path(tmp))
        try:
            cluster.start()
            for wait in (0, 1):
                row = asyncio.run(run_load(cluster, wait, args.concurrency, args.seconds, kill=False))
                print(json.dumps({"phase": "latency", **row}), flush=True)
                results.append({"phase": "latency", **row})
            for run in range(args.runs):
                for lag_ms in (0, args.lag_ms):
                    for wait in (0, 1):
                        row = asyncio.run(
                            run_load(cluster, wait, args.concurrency, args.seconds, kill=True, lag_ms=lag_ms)
                        )
                        print(json.dumps({"phase": "failover", "run": run, **row}), flush=True)
                        results.append({"phase": "failover", "run": run, **row})
        finally:
            cluster.stop()
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
