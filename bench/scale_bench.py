"""The scaling curve (issue #16): pixel loads/s and worker openings/s as processes, partitions and
Redis nodes are added, with the CPU each process used per 1,000 events, on this machine.

Usage (MariaDB on loopback, redis-server, redis-cli and wrk installed):

    .venv/bin/python -m bench.scale_bench [--duration 10] [--tokens 40000] [--events 100000]
    .venv/bin/python -m bench.scale_bench --quick      # tiny sizes, for development

In one run, against the service as shipped (bench/servers.start_api: `pixeltrack serve --no-worker
--workers N`; `pixeltrack worker` processes), a fresh MariaDB database of its own
(`pixeltrack_scale`, its own user) and Redis servers of its own on free loopback ports:

1. pixel loads/s with wrk (distinct tokens in a loop, as bench/pixel_bench does) for 1 and 2 API
   processes, against one Redis (STREAM_PARTITIONS=1, the default) and against a 3-master +
   3-replica Redis Cluster (tests/support/redis_cluster.py; STREAM_PARTITIONS=16); after each,
   a `pixeltrack worker` drains what the API enqueued and the rows are checked;
2. worker openings/s for 1, 2 and 4 `pixeltrack worker` processes over 1 and 16 partitions, from
   streams pre-filled with --events raw events (the worker classifies them), on one Redis.
   With one partition every process consumes it (the consumer group shares the entries out);
   with 16, `--layout split` (the default) gives each process its own range (`--partitions 0-7`,
   `8-15`): the deployment docs/scaling.md scales (workers per partition: no two processes poll
   the same streams, each batch is one partition's); `--layout all` has every process consume
   every partition, for comparison;
3. per cell: the CPU seconds per 1,000 events of the API (its uvicorn worker processes included),
   the workers, the redis-server processes, wrk and (worker cells) the machine's mariadbd, which
   is shared with whatever else runs, from /proc/<pid>/stat; and the cores they kept busy, so the
   curve reads correctly on a 2-core machine (it flattens where the cores are used up);
4. 0 lost, 0 duplicated in every cell: openings rows == distinct pixels loaded == distinct event
   ids (pixel cells), rows == distinct event ids == events (worker cells); a cell that fails says
   FAIL, and the run exits 1;
5. prints the tables with ratios against each table's first cell and writes
   bench/results/scale-latest.{md,json}.

Cells that need work not on this branch yet say so ("n/a (...)") instead of failing.
Environment: BENCH_MYSQL_URL (server URL, default root@127.0.0.1:3306), BENCH_PORT (default: a free port).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from app.clients import sync_redis
from app.db import make_engine
from app.tracking.tokens import TokenCodec
from bench import scale_report
from bench.pixel_bench import seed
from bench.procstat import pids_of
from bench.scale_cells import Backend, load_average, pixel_cell, worker_cell
from bench.servers import PIXELTRACK, ROOT, PrivateRedis, free_port, fresh_database, production_env
from tests.support.mariadb_server import PrivateMariaDB
from tests.support.redis_cluster import PrivateRedisCluster

RESULTS = ROOT / "bench" / "results"
API_PROCESSES = (1, 2)
WORKER_PROCESSES = (1, 2, 4)
PARTITIONS = (1, 16)
CLUSTER_PARTITIONS = 16


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def partitions_supported() -> bool:
    """`pixeltrack worker --partitions` exists (the partitioned streams work is merged)."""
    out = subprocess.run([PIXELTRACK, "worker", "--help"], capture_output=True, text=True, check=False).stdout
    return "--partitions" in out


def cluster_supported() -> bool:
    """The app has a Redis Cluster client (REDIS_CLUSTER, `redis+cluster://`)."""
    return any("RedisCluster" in p.read_text() for p in (ROOT / "app").rglob("*.py"))


def single_backend() -> Backend:
    server = PrivateRedis()  # this run's own: nothing shared to flush

    def flush() -> None:
        client.flushall()

    client = sync_redis(server.url)
    return Backend("single Redis", server.url, client, lambda: [server.proc.pid], flush)


def cluster_backend() -> Backend:

    cluster = PrivateRedisCluster(Path(tempfile.mkdtemp(prefix="pixeltrack-bench-cluster-")))

    def stop() -> None:
        cluster.stop()
        shutil.rmtree(cluster.dir, ignore_errors=True)

    atexit.register(stop)  # also when the run fails half-way
    cluster.start()
    return Backend(
        "3-master cluster",
        cluster.url,
        cluster.client(),
        lambda: [n.proc.pid for n in cluster.nodes if n.proc is not None and n.proc.poll() is None],
        cluster.flush,
        cluster=True,
    )


def database(opts: argparse.Namespace) -> str:
    """The run's database: on a mariadbd of its own (default: its CPU is the database's alone), or a
    throwaway database on the machine's server (`--system-mariadb`, BENCH_MYSQL_URL)."""
    if opts.system_mariadb:
        opts.database_pids = lambda: pids_of("mariadbd")
        opts.database_server = "the machine's mariadbd (shared: its CPU includes whatever else ran)"
        return fresh_database("pixeltrack_scale")
    server = PrivateMariaDB(Path(tempfile.mkdtemp(prefix="pixeltrack-bench-mariadb-")))

    def stop() -> None:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)

    atexit.register(stop)
    server.install()
    server.start()
    opts.database_pids = lambda: [server.proc.pid] if server.proc is not None else []
    opts.database_server = (
        "a mariadbd of this run (tests/support/mariadb_server.py: 64 MB buffer pool, durable commits)"
    )
    return fresh_database("pixeltrack_scale", server.server_url())


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk load per pixel cell (default 10)")
    parser.add_argument("--tokens", type=int, default=40_000, help="distinct pixels (default 40,000)")
    parser.add_argument(
        "--events", type=int, default=100_000, help="events pre-filled per worker cell (default 100,000)"
    )
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--layout", choices=("split", "all"), default="split", help="partitions among workers")
    parser.add_argument("--drain-timeout", type=float, default=300, help="max seconds for the workers to drain")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes (development): 3 s, 2,000 pixels, 5,000 events"
    )
    parser.add_argument(
        "--system-mariadb",
        action="store_true",
        help="a throwaway database on BENCH_MYSQL_URL's server, not a private one",
    )
    parser.add_argument("--only", choices=("pixel", "worker"), help="one table only (development)")
    parser.add_argument(
        "--report-from", type=Path, help="no run: render the report (tables, capacity) again from a results JSON"
    )
    parser.add_argument("--no-results", action="store_true", help="print only: do not write bench/results/")
    opts = parser.parse_args()
    if opts.quick:
        opts.duration, opts.tokens, opts.events = 3, 2_000, 5_000
    return opts


def write(summary: dict[str, Any], opts: argparse.Namespace) -> None:
    summary["capacity"] = scale_report.capacity(summary)
    lines = scale_report.markdown(summary)
    if not opts.no_results:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "scale-latest.md").write_text("\n".join(lines))
        (RESULTS / "scale-latest.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n".join(lines))


def main() -> int:
    opts = options()
    if opts.report_from:
        write(json.loads(opts.report_from.read_text()), opts)
        return 0
    if not shutil.which("wrk"):
        log("wrk is missing: apt-get install -y wrk")
        return 2
    load_start, started = load_average(), time.monotonic()
    log(f"load average at start: {load_start}")
    fernet_key = Fernet.generate_key().decode()
    url = database(opts)
    log(f"seeding {opts.tokens:,} contacts and pixels ...")
    pixel_ids = seed(url, opts.tokens)
    opts.tokens_file = RESULTS / "tmp" / "scale-tokens.txt"
    opts.tokens_file.parent.mkdir(parents=True, exist_ok=True)
    codec = TokenCodec([fernet_key])
    opts.tokens_file.write_text("\n".join(codec.pixel_token(p) for p in pixel_ids) + "\n")
    port = int(os.environ.get("BENCH_PORT") or free_port())
    single = single_backend()
    base = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env = {**base, **production_env(url, single.url, fernet_key), "LOG_LEVEL": "WARNING", "WORKER_METRICS_PORT": "0"}
    engine = make_engine(url)
    have_partitions, have_cluster = partitions_supported(), cluster_supported()
    pixel: list[dict[str, Any]] = []
    workers: list[dict[str, Any]] = []
    cluster: Backend | None = None
    try:
        for n in API_PROCESSES if opts.only != "worker" else ():
            log(f"pixel: {n} API process(es), single Redis ...")
            pixel.append(pixel_cell(engine, single, {**env, "STREAM_PARTITIONS": "1"}, n, opts, port))
        if opts.only == "worker":
            pass
        elif have_cluster and have_partitions:
            log("starting a 3-master + 3-replica Redis Cluster ...")
            cluster = cluster_backend()
            cluster_env = {**env, "REDIS_URL": cluster.url, "STREAM_PARTITIONS": str(CLUSTER_PARTITIONS)}
            for n in API_PROCESSES:
                log(f"pixel: {n} API process(es), 3-master cluster ...")
                pixel.append(pixel_cell(engine, cluster, cluster_env, n, opts, port))
        else:
            missing = "cluster support" if not have_cluster else "partitioned streams"
            pixel.extend(
                {"api_processes": n, "redis": "3-master cluster", "na": f"{missing} not merged"} for n in API_PROCESSES
            )
        for partitions in PARTITIONS if opts.only != "pixel" else ():
            for n in WORKER_PROCESSES:
                if partitions > 1 and not have_partitions:
                    workers.append({"processes": n, "partitions": partitions, "na": "partitioned streams not merged"})
                    continue
                log(f"worker: {n} process(es) over {partitions} partition(s), {opts.events:,} events ...")
                workers.append(worker_cell(engine, single, env, pixel_ids, n, partitions, opts))
    finally:
        engine.dispose()
        single.client.close()
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_at_start": load_start,
        "load_average_at_end": load_average(),
        "run_seconds": round(time.monotonic() - started),
        "options": {k: v for k, v in vars(opts).items() if k not in ("tokens_file", "database_pids", "report_from")},
        "api_as": "pixeltrack serve --no-worker --no-sample --workers N (bench/servers.start_api)",
        "worker_as": "pixeltrack worker --consumer NAME [--partitions RANGE] (WORKER_BATCH_SIZE default)",
        "pixel": pixel,
        "worker": workers,
    }
    write(summary, opts)
    failed = [c for c in pixel + workers if "check" in c and not c["check"]["ok"]]
    for cell in failed:
        log(f"FAIL: {cell}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
