"""Edge mode benchmark (docs/edge.md): pixel loads/s through the nginx edge vs the Python fast path vs bare
nginx `empty_gif`, in one run, and `pixeltrack ship` events/s.

Usage (MariaDB and Redis on loopback, nginx and wrk installed):

    .venv/bin/python -m bench.edge_bench [--duration 10] [--tokens 40000] [--connections 64]

In one run it
1. starts a private redis-server and the API exactly as shipped (`pixeltrack serve --no-worker`,
   1 uvicorn worker, MariaDB + Redis: the Python fast path, the baseline);
2. starts a private nginx with deploy/nginx/pixeltrack.conf (only its `# site:` values replaced),
   proxying to that API, and a second one with the same file but the spool log off (bare
   `empty_gif`: what nginx alone can answer here, the physical limit of this machine);
3. runs wrk (`--connections`, 2 threads, bench/pixel_load.lua: each token loaded once, then
   repeats) for `--duration` seconds against each: bare nginx, the edge, the Python fast path;
4. runs `pixeltrack ship --once` on the edge's spool log (every line of step 3) and times it:
   events/s through the dedupe script into the stream; checks every line was read once and the
   stream holds one entry per distinct token loaded (the human slot; the dedupe window is on);
5. prints loads/s, p50/p99, the ratios to the Python fast path, the load average, and writes
   bench/results/edge-latest.{md,json}.
"""

from __future__ import annotations

import argparse
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
from app.tracking.events import STREAM
from app.tracking.tokens import TokenCodec
from bench.pixel_bench import run_wrk
from bench.servers import PIXELTRACK, PrivateRedis, free_port, fresh_database, production_env, start_api, stop
from tests.support.nginx_edge import PrivateNginx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SPOOL_LINE = "access_log {spool}/pixels.log pixeltrack_spool;"


def log(message: str) -> None:
    print(f"[edge-bench] {message}", flush=True)


def bare(edge: PrivateNginx) -> None:
    """The edge's own configuration with the spool log off: `empty_gif` and the headers only."""
    text = edge.conf.read_text()
    line = SPOOL_LINE.format(spool=edge.spool)
    assert line in text, "the pixel location's access_log line changed: update the benchmark"
    edge.conf.write_text(text.replace(line, "access_log off;"))


def ship_once(env: dict[str, str], spool_log: Path) -> dict[str, Any]:
    lines = sum(1 for _ in spool_log.open("rb"))
    started = time.perf_counter()
    out = subprocess.run(
        [PIXELTRACK, "ship", "--log", str(spool_log), "--once", "--batch-size", "500"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    seconds = time.perf_counter() - started
    state = json.loads(spool_log.with_name(f".{spool_log.name}.ship").read_text())["totals"]
    return {
        "lines": lines,
        "seconds": round(seconds, 2),
        "events_per_s": round(lines / seconds),
        "totals": state,
        "out": out,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=40_000)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(binary, os.X_OK) or shutil.which("wrk") is None:
        raise SystemExit("nginx and wrk are needed: apt-get install -y nginx-light wrk")
    work = Path(tempfile.mkdtemp(prefix="pixeltrack-edge-bench-"))
    fernet = Fernet.generate_key().decode()
    codec = TokenCodec([fernet])
    minter = codec.minter()
    tokens_file = work / "tokens.txt"
    tokens_file.write_text("\n".join(minter.pixel_token(i) for i in range(1, args.tokens + 1)) + "\n")
    redis = PrivateRedis()
    env = production_env(fresh_database("pixeltrack_edge_bench"), redis.url, fernet)
    api_port = free_port()
    api = start_api(api_port, env)
    edge = PrivateNginx(work / "edge", [api_port], binary)
    limit = PrivateNginx(work / "bare", [api_port], binary)
    bare(limit)
    edge.start()
    limit.start()
    results: dict[str, Any] = {}
    try:
        for name, port in (("bare nginx empty_gif", limit.port), ("nginx edge", edge.port), ("python", api_port)):
            log(f"wrk {args.duration} s, {args.connections} connections: {name}")
            results[name] = run_wrk(tokens_file, args.duration, args.connections, 2, port=port)
        edge.stop()  # every line written
        log("pixeltrack ship --once on the edge's spool log")
        client = sync_redis(redis.url)
        client.flushdb()
        shipped = ship_once(env, edge.log)
        stream = client.xlen(STREAM)
    finally:
        edge.stop()
        limit.stop()
        stop(api)
        redis.stop()
    load = os.getloadavg()
    python = results["python"]["rps"]
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_average_after": [round(x, 2) for x in load],
        "duration_s": args.duration,
        "connections": args.connections,
        "loads": results,
        "ratios_to_python": {name: round(r["rps"] / python, 2) for name, r in results.items()},
        "edge_vs_bare": round(results["nginx edge"]["rps"] / results["bare nginx empty_gif"]["rps"], 2),
        "ship": {k: v for k, v in shipped.items() if k != "out"},
        "stream_entries": stream,
        "distinct_tokens_loaded_at_edge": results["nginx edge"]["distinct"],
    }
    shipped_ok = shipped["totals"]["lines"] == shipped["lines"] and stream == results["nginx edge"]["distinct"]
    report["check"] = "ok: every line read once, one stream entry per distinct token" if shipped_ok else "MISMATCH"
    write(report)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if shipped_ok else 1


def write(report: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "edge-latest.json").write_text(json.dumps(report, indent=2) + "\n")
    rows = [
        f"| {name} | {r['rps']:,.0f} | {report['ratios_to_python'][name]:.2f}x | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
        f"| {r['non_2xx'] + r['socket_errors']} |"
        for name, r in report["loads"].items()
    ]
    ship = report["ship"]
    text = "\n".join(
        [
            "# Edge benchmark (bench/edge_bench.py)",
            "",
            f"{report['date']} · {report['machine']} · load average after the run: "
            f"{', '.join(map(str, report['load_average_after']))} (a shared machine: other work ran beside it)",
            "",
            f"wrk, {report['connections']} connections, 2 threads, {report['duration_s']} s each, in one run; "
            "the Python fast path is `pixeltrack serve --no-worker` (1 uvicorn worker, Redis, MariaDB); nginx runs "
            "`worker_processes auto` with deploy/nginx/pixeltrack.conf; bare = the same file with the spool log off.",
            "",
            "| path | loads/s | vs Python | p50 ms | p99 ms | errors |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
            "",
            f"Edge / bare nginx: {report['edge_vs_bare']:.2f} (the cost of the spool log line).",
            "",
            f"`pixeltrack ship --once`: {ship['lines']:,} lines in {ship['seconds']} s = **{ship['events_per_s']:,} "
            f"events/s** (process start included; batches of 500, one dedupe-script call each); "
            f"{report['stream_entries']:,} stream entries for {report['distinct_tokens_loaded_at_edge']:,} distinct "
            f"tokens loaded ({report['check']}).",
            "",
            "Trade-off: nginx answers before the event is durable anywhere but its spool log (a lost disk loses "
            "the loads not yet shipped; ship lags by its batch), and a forged token gets the GIF; the Python path "
            "answers after Redis has the event.",
            "",
        ]
    )
    (RESULTS / "edge-latest.md").write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
