"""Server CPU time per request of `/healthz` and the authenticated legs of `bench/auth_bench.py`.

Usage (same prerequisites as bench/auth_bench.py):

    .venv/bin/python -m bench.auth_cpu [--requests 3000] [--connections 8] [--app-from DIR]

Throughput ratios on a shared machine move with whatever else runs there; the CPU time the
server process spends per request hardly does. This starts the API as `auth_bench` does (as
shipped, MariaDB + private Redis, rate limit on), warms each leg up, then drives each leg with
wrk until at least `--requests` answers and reads the server's user + system CPU time
(/proc/PID/stat, every thread, and any child process) before and after: µs of server CPU per
request, and `/healthz`'s figure divided by each leg's, the ratio the throughput target would
have on a server that is CPU-bound (the throughput ratio is this ratio when the client, the
database and Redis are on other cores). Nothing is written to bench/results.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
from pathlib import Path

from cryptography.fernet import Fernet

from bench.auth_bench import ADMIN, ADMIN_PASSWORD, legs, log, prepare
from bench.servers import PrivateRedis, free_port, fresh_database, production_env, start_api, stop

TICKS = os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            children = (task / "children").read_text().split() if (task / "children").exists() else []
            todo += [int(child) for child in children]
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process tree rooted at `pid` (all threads)."""
    total = 0
    for each in _descendants(pid):
        fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / TICKS


def wrk_requests(url: str, seconds: float, connections: int, authorization: str | None) -> int:
    headers = ["-H", f"Authorization: {authorization}"] if authorization else []
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", *headers, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if re.search(r"Non-2xx", out):
        raise RuntimeError(f"non-2xx answers from {url}:\n{out}")
    return int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]


def measure(pid: int, url: str, header: str | None, requests: int, connections: int) -> float:
    """µs of server CPU per request over at least `requests` requests."""
    wrk_requests(url, 1, connections, header)  # warm-up (caches, connection pool)
    done, cpu = 0, 0.0
    while done < requests:
        before = cpu_seconds(pid)
        done += wrk_requests(url, 2, connections, header)
        cpu += cpu_seconds(pid) - before
    return cpu / done * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="requests per leg, at least (default 3000)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (default 8)")
    parser.add_argument("--app-from", type=Path, default=None, help="serve the `app` package of DIR (see auth_bench)")
    opts = parser.parse_args()
    url = fresh_database("pixeltrack_auth_cpu")
    redis = PrivateRedis()
    port = free_port()
    env = {
        **production_env(url, redis.url, Fernet.generate_key().decode()),
        "FIRST_ADMIN_USERNAME": ADMIN,
        "FIRST_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "RATE_LIMIT_PER_MINUTE": "1000000",
    }
    if opts.app_from is not None:
        env["PYTHONPATH"] = str(opts.app_from.resolve())
    api = start_api(port, env)
    base = f"http://127.0.0.1:{port}"
    try:
        figures = {
            name: measure(api.pid, leg_url, header, opts.requests, opts.connections)
            for name, leg_url, header in legs(base, *prepare(base))
        }
    finally:
        stop(api)
        redis.stop()
    healthz = figures["GET /healthz"]
    for name, micros in figures.items():
        log(f"{name:<44} {micros:>8.0f} µs CPU/request  {healthz / micros:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
