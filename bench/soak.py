"""Soak: the real stack under a steady pixel load for a minute, the worker draining meanwhile.

Usage (MariaDB and Redis on loopback, wrk installed):

    .venv/bin/python -m bench.soak [--duration 60] [--rate 5000] [--connections 32] [--new-share 0.5]

In one run it
1. creates a fresh MariaDB database (`pixeltrack_soak`) and seeds enough contacts with one
   pixel each for the run's new loads;
2. starts the real app (`app.main:create_asgi`, 1 uvicorn worker, MariaDB + Redis) and a
   `pixeltrack worker` process that drains the stream into MariaDB *during* the load;
3. runs wrk for `--duration` seconds at a steady `--rate` (bench/soak_load.lua: Debian's wrk
   4.1 has no `-R`, so each of the fixed connections paces itself with wrk's `delay()` hook,
   re-tuned every second to hold the target; a mix of new loads and repeats all along);
4. samples, every second, the stream backlog (entries not yet inserted and acknowledged),
   the pending entries, the API's resident memory and the machine's CPU use;
5. after the load, times the worker until the backlog is empty, then checks the rows:
   openings rows == distinct pixels loaded, one row per pixel, no duplicate event id;
6. prints p50/p99 latency, errors (non-2xx + socket errors), worker lag at the end and the
   row check, and writes bench/results/soak-latest.{md,json}.

Environment: BENCH_MYSQL_URL (server URL, default root@127.0.0.1:3306), SOAK_PORT (default: a
free port). Redis is a redis-server of this run only, never the system one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from app.clients import sync_redis
from app.db import make_engine
from app.models import Opening
from app.tracking.queue import GROUP, STREAM
from app.tracking.tokens import TokenCodec
from bench.pixel_bench import seed
from bench.procstat import cpu_seconds, machine_busy, pids_of
from bench.servers import PrivateRedis, fresh_database, production_env

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
VENV_BIN = Path(sys.executable).parent


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str, token: str = "", timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1, headers={"Authorization": f"Bearer {token}"}).raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


DAEMONS = ("redis-server", "mariadbd")


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def scrape(url: str, token: str) -> dict[str, float]:
    """name{labels} → value of every sample of a /metrics page (METRICS_TOKEN as the bearer token)."""
    out: dict[str, float] = {}
    response = httpx.get(url, timeout=5, headers={"Authorization": f"Bearer {token}"})
    body = response.raise_for_status().text
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def metric_sum(metrics: dict[str, float], name: str, **labels: str) -> float:
    total = 0.0
    for key, value in metrics.items():
        base, _, rest = key.partition("{")
        if base == name and all(f"{k}={v}" in rest for k, v in labels.items()):
            total += value
    return total


class Sampler(threading.Thread):
    """Every second: stream backlog and pending, API memory, machine CPU use."""

    def __init__(self, redis: Any, api_pid: int) -> None:
        super().__init__(daemon=True)
        self.redis = redis
        self.api_pid = api_pid
        self.samples: list[dict[str, float]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        last = machine_busy()
        while not self._halt.wait(1.0):
            busy = machine_busy()
            cores_busy = (busy[0] - last[0]) / max(1, busy[1] - last[1]) * (os.cpu_count() or 1)
            last = busy
            try:
                backlog = self.redis.xlen(STREAM)
                pending = int(self.redis.xpending(STREAM, GROUP)["pending"])
            except Exception as exc:  # noqa: BLE001 - a missed sample is not a failure
                log(f"sampler: {exc!r}")
                continue
            self.samples.append(
                {
                    "t": round(time.monotonic() - started, 1),
                    "backlog": backlog,
                    "pending": pending,
                    "api_rss_mb": round(rss_mb(self.api_pid), 1),
                    "cores_busy": round(cores_busy, 2),
                }
            )

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(5)


def start_wrk(port: int, tokens_file: Path, opts: argparse.Namespace) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            "wrk",
            f"-t{opts.threads}",
            f"-c{opts.connections}",
            f"-d{opts.duration}s",
            "--timeout",
            "5s",
            "--latency",
            "-s",
            str(ROOT / "bench" / "soak_load.lua"),
            f"http://127.0.0.1:{port}",
            "--",
            str(tokens_file),
            str(opts.threads),
            str(opts.connections),
            str(opts.rate),
            str(opts.new_share),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def parse_wrk(out: str) -> dict[str, Any]:
    def num(pattern: str) -> int:
        match = re.search(pattern, out)
        if match is None:
            raise RuntimeError(f"unexpected wrk output (no {pattern!r}):\n{out}")
        return int(match.group(1))

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()), strict=True)) if sockets else {}
    )
    return {
        "requests": num(r"(\d+) requests in"),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": num(r"P50_US (\d+)") / 1000,
        "p90_ms": num(r"P90_US (\d+)") / 1000,
        "p99_ms": num(r"P99_US (\d+)") / 1000,
        "p999_ms": num(r"P99.9_US (\d+)") / 1000,
        "max_ms": num(r"MAX_US (\d+)") / 1000,
        "distinct": num(r"DISTINCT (\d+)"),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=60, help="seconds of load (default 60)")
    parser.add_argument("--rate", type=int, default=5000, help="target pixel loads per second (default 5,000)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--new-share", type=float, default=0.5, help="share of loads that are new pixels (default 0.5)")
    parser.add_argument("--drain-timeout", type=int, default=300, help="max seconds for the worker to catch up")
    opts = parser.parse_args()
    if not shutil.which("wrk"):
        log("wrk is missing: apt-get install -y wrk")
        return 2

    fernet_key = Fernet.generate_key().decode()
    n_tokens = math.ceil(opts.rate * opts.duration * opts.new_share * 1.2) + 1000
    url = fresh_database("pixeltrack_soak")
    log(f"seeding {n_tokens:,} contacts and pixels ...")
    pixel_ids = seed(url, n_tokens)
    codec = TokenCodec([fernet_key])
    tokens_file = RESULTS / "tmp" / "soak-tokens.txt"
    tokens_file.parent.mkdir(parents=True, exist_ok=True)
    tokens_file.write_text("\n".join(codec.pixel_token(p) for p in pixel_ids) + "\n")
    private_redis = PrivateRedis()  # this run's own: nothing shared to flush
    redis = sync_redis(private_redis.url)
    port = int(os.environ.get("SOAK_PORT") or free_port())
    worker_metrics_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        **production_env(url, private_redis.url, fernet_key),
        "LOG_LEVEL": "WARNING",
        "WORKER_METRICS_PORT": str(worker_metrics_port),
    }
    token = env["METRICS_TOKEN"]
    api = worker = load = None
    sampler: Sampler | None = None
    engine = make_engine(url)
    try:
        log("starting the API (1 uvicorn worker) and `pixeltrack worker` ...")
        api = subprocess.Popen(
            [
                str(VENV_BIN / "uvicorn"),
                "app.main:create_asgi",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env=env,
            cwd=ROOT,
        )
        worker = subprocess.Popen([str(VENV_BIN / "pixeltrack"), "worker", "--consumer", "soak"], env=env, cwd=ROOT)
        wait_http(f"http://127.0.0.1:{port}/healthz", api, "the API")
        wait_http(f"http://127.0.0.1:{worker_metrics_port}/metrics", worker, "the worker", token)
        api_metrics_before = scrape(f"http://127.0.0.1:{port}/metrics", token)
        rss_start = rss_mb(api.pid)
        cpu_start = {"api": cpu_seconds(api.pid), "worker": cpu_seconds(worker.pid)}
        busy_start = machine_busy()
        sampler = Sampler(redis, api.pid)
        sampler.start()
        log(
            f"load: {opts.rate:,} loads/s target for {opts.duration} s over {opts.connections} connections, "
            f"{opts.new_share:.0%} new pixels ..."
        )
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        daemons_before = {name: sum(cpu_seconds(p) for p in pids_of(name)) for name in DAEMONS}
        started = time.monotonic()
        load = start_wrk(port, tokens_file, opts)
        out, _ = load.communicate(timeout=opts.duration + 120)
        load_s = time.monotonic() - started
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk is the only child reaped meanwhile
        wrk_cpu = (children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime) / load_s
        daemons = {
            name: (sum(cpu_seconds(p) for p in pids_of(name)) - daemons_before[name]) / load_s for name in DAEMONS
        }
        if load.returncode != 0:
            raise RuntimeError(f"wrk failed ({load.returncode}):\n{out}")
        wrk = parse_wrk(out)
        busy_end = machine_busy()
        cpu_end = {"api": cpu_seconds(api.pid), "worker": cpu_seconds(worker.pid)}
        # Worker lag when the load stops, then the time it takes to catch up.
        backlog_end = redis.xlen(STREAM)
        pending_end = int(redis.xpending(STREAM, GROUP)["pending"])
        worker_metrics = scrape(f"http://127.0.0.1:{worker_metrics_port}/metrics", token)
        drain_started = time.monotonic()
        deadline = drain_started + opts.drain_timeout
        while redis.xlen(STREAM) or int(redis.xpending(STREAM, GROUP)["pending"]):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError(f"the worker did not drain the stream ({redis.xlen(STREAM)} entries left)")
            time.sleep(0.05)
        drain_s = time.monotonic() - drain_started
        sampler.stop()
        api_metrics = scrape(f"http://127.0.0.1:{port}/metrics", token)
        rss_end = rss_mb(api.pid)
    finally:
        if load is not None and load.poll() is None:
            load.kill()
            load.wait()
        try:
            stop(api)
        finally:
            stop(worker)
            if sampler is not None:
                sampler.stop()

    with engine.connect() as conn:
        rows = conn.scalar(select(func.count()).select_from(Opening)) or 0
        distinct_pixels = conn.scalar(select(func.count(func.distinct(Opening.pixel_id)))) or 0
        distinct_events = conn.scalar(select(func.count(func.distinct(Opening.event_id)))) or 0
    engine.dispose()
    dedupe_keys = sum(1 for _ in redis.scan_iter(match="pt:d:o:*", count=10_000))
    private_redis.stop()

    def delta(name: str, **labels: str) -> float:
        return metric_sum(api_metrics, name, **labels) - metric_sum(api_metrics_before, name, **labels)

    recorded = int(delta("pixeltrack_tracking_requests_total", result="recorded"))
    deduplicated = int(delta("pixeltrack_tracking_requests_total", result="deduplicated"))
    degraded = metric_sum(api_metrics, "pixeltrack_degraded")
    errors = wrk["non_2xx"] + sum(wrk["socket_errors"].values())
    wall = busy_end[1] - busy_start[1]
    cores = os.cpu_count() or 1
    machine_cores = (busy_end[0] - busy_start[0]) / max(1, wall) * cores
    api_cores = (cpu_end["api"] - cpu_start["api"]) / load_s
    worker_cores = (cpu_end["worker"] - cpu_start["worker"]) / load_s
    check = {
        "distinct_pixels_loaded": wrk["distinct"],
        "recorded_by_api": recorded,
        "dedupe_keys_in_redis": dedupe_keys,
        "openings_rows": rows,
        "distinct_pixels_in_rows": distinct_pixels,
        "distinct_event_ids": distinct_events,
        "ok": rows == distinct_pixels == distinct_events == wrk["distinct"] == recorded,
    }
    samples = sampler.samples if sampler is not None else []
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {cores} cores, Python {platform.python_version()}",
        "load": {
            "tool": "wrk 4.1 + bench/soak_load.lua (paced connections, rate re-tuned every second)",
            "duration_s": opts.duration,
            "target_rate": opts.rate,
            "connections": opts.connections,
            "new_share": opts.new_share,
        },
        "results": {**wrk, "achieved_rate": round(wrk["requests"] / opts.duration), "errors": errors},
        "api": {
            "recorded": recorded,
            "deduplicated": deduplicated,
            "degraded_gauge": degraded,
            "rss_mb_start": round(rss_start, 1),
            "rss_mb_end": round(rss_end, 1),
        },
        "worker": {
            "backlog_at_end": backlog_end,
            "pending_at_end": pending_end,
            "undelivered_at_end": backlog_end - pending_end,
            "gauge_stream_length_at_end": metric_sum(worker_metrics, "pixeltrack_stream_length"),
            "max_backlog_during_run": max((s["backlog"] for s in samples), default=0),
            "drain_seconds_after_load": round(drain_s, 2),
        },
        "cpu_cores_busy": {
            "machine": round(machine_cores, 2),
            "api": round(api_cores, 2),
            "worker": round(worker_cores, 2),
            "wrk": round(wrk_cpu, 2),
            **{name: round(value, 2) for name, value in daemons.items()},
            "other processes": round(machine_cores - api_cores - worker_cores - wrk_cpu - sum(daemons.values()), 2),
        },
        "row_check": check,
        "samples": samples,
    }
    r, w, c = summary["results"], summary["worker"], summary["cpu_cores_busy"]
    contention = (
        f"CPU during the load (cores busy, of {cores}): machine {c['machine']:.2f} = API {c['api']:.2f} + worker "
        f"{c['worker']:.2f} + wrk {c['wrk']:.2f} + redis-server {c['redis-server']:.2f} + mariadbd {c['mariadbd']:.2f} "
        f"(the system daemons, shared) + other processes {c['other processes']:.2f}"
        + (" — **CPU contention: other processes were busy during the run**." if c["other processes"] > 0.25 else ".")
    )
    every = max(1, len(samples) // 12)
    lines = [
        "# Soak test (latest run)",
        "",
        f"{summary['when']} — {summary['machine']}. `python -m bench.soak --duration {opts.duration} --rate {opts.rate}`: "
        f"the real app (1 uvicorn worker, MariaDB + Redis) and a `pixeltrack worker` draining concurrently; wrk "
        f"{opts.connections} connections paced to {opts.rate:,} loads/s (bench/soak_load.lua; Debian's wrk has no `-R`), "
        f"{opts.new_share:.0%} new pixels and the rest repeats, for {opts.duration} s.",
        "",
        "| requests | achieved loads/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors (non-2xx + socket) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {r['requests']:,} | {r['achieved_rate']:,} | {r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | {r['p999_ms']} | "
        f"{r['max_ms']} | {r['errors']} ({r['non_2xx']} non-2xx, socket {r['socket_errors'] or 'none'}) |",
        "",
        f"Worker lag when the load stopped: **{w['backlog_at_end']:,} entries** in the stream ({w['pending_at_end']} being inserted, "
        f"{w['undelivered_at_end']:,} not yet read); max backlog during the run {w['max_backlog_during_run']:,}; "
        f"drained {w['drain_seconds_after_load']} s after the load ended.",
        "",
        f"API: {recorded:,} loads recorded, {deduplicated:,} deduplicated; degraded gauge {degraded:.0f}; resident memory "
        f"{summary['api']['rss_mb_start']} MB → {summary['api']['rss_mb_end']} MB.",
        "",
        contention,
        "",
        f"Row check: {wrk['distinct']:,} distinct pixels loaded, {recorded:,} recorded by the API, {dedupe_keys:,} dedupe keys; "
        f"{rows:,} openings rows for {distinct_pixels:,} distinct pixels and {distinct_events:,} distinct event ids "
        f"→ **{'OK: no loss, no duplicate' if check['ok'] else 'MISMATCH'}**.",
        "",
        "| t (s) | stream backlog | pending | API RSS MB | cores busy |",
        "|---:|---:|---:|---:|---:|",
        *[
            f"| {s['t']} | {s['backlog']:,} | {s['pending']} | {s['api_rss_mb']} | {s['cores_busy']} |"
            for s in samples[::every]
        ],
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak-latest.md").write_text("\n".join(lines))
    (RESULTS / "soak-latest.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n".join(lines))
    return 0 if check["ok"] and errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
