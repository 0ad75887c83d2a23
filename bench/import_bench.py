"""Bulk imports vs pixel latency (issue #10 item 9): pixel p99 with and without 10,000-row imports
running back to back, measured in the same run against the same server.

Usage (MariaDB on loopback, wrk and redis-server installed):

    .venv/bin/python -m bench.import_bench [--duration 10] [--rounds 3] [--connections 16] [--rows 10000]

1. creates a fresh MariaDB database, seeds pixels, starts a private redis-server and the API
   exactly as shipped (`pixeltrack serve --no-worker`, 1 uvicorn worker);
2. `--rounds` times, alternating on the same server:
   a) loads pixels with wrk for `--duration` seconds, no import running: the baseline;
   b) lets a client import `--rows` contacts per request back to back (a new group each time,
      all-or-nothing bulk POST /api/v1/groups/{id}/contacts) and loads pixels again for the same
      duration while it runs; then lets the import in flight finish;
3. prints every phase, the median p99 of each kind and their ratio (target: with imports <= 3x
   without), and writes bench/results/import-latest.{md,json}.

Alternating rounds, rather than one phase of each, keeps a slow minute of a shared machine from
landing on one side of the ratio only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from cryptography.fernet import Fernet

from app.tracking.tokens import TokenCodec
from bench.pixel_bench import RESULTS, log, run_wrk, seed
from bench.servers import PrivateRedis, free_port, fresh_database, production_env, start_api, stop

ADMIN, ADMIN_PASSWORD = "bench-admin", "bench-admin-password"


class Importer(threading.Thread):
    """Posts the same `rows`-contact body to a new group of one campaign, back to back, while `go` is set."""

    def __init__(self, base: str, auth: dict[str, str], campaign_id: int, body: bytes) -> None:
        super().__init__(daemon=True)
        self.http = httpx.Client(base_url=base, headers=auth, timeout=120.0)
        self.campaign_id = campaign_id
        self.body = body
        self.go = threading.Event()
        self.running = threading.Event()  # an import of the current round has started
        self.stopping = threading.Event()
        self.in_flight = threading.Lock()
        self.seconds: list[float] = []
        self.failures: list[int] = []

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            if not self.go.wait(0.1):
                continue
            n += 1
            with self.in_flight:
                group = self.http.post(f"/api/v1/campaigns/{self.campaign_id}/groups", json={"name": f"import-{n}"})
                group.raise_for_status()
                self.running.set()
                started = time.perf_counter()
                response = self.http.post(
                    f"/api/v1/groups/{group.json()['id']}/contacts",
                    content=self.body,
                    headers={"Content-Type": "application/json"},
                )
                if response.status_code == 201:
                    self.seconds.append(time.perf_counter() - started)
                else:
                    self.failures.append(response.status_code)
        self.http.close()

    def resume(self) -> None:
        self.running.clear()
        self.go.set()
        if not self.running.wait(60):
            raise RuntimeError("the importer did not start")

    def pause(self) -> None:
        """Stop starting imports and wait for the one in flight."""
        self.go.clear()
        with self.in_flight:
            pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of pixel load per phase (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of both phases (default 3)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--rows", type=int, default=10_000, help="contacts per import (default 10,000)")
    parser.add_argument("--tokens", type=int, default=20_000, help="distinct pixels loaded (default 20,000)")
    opts = parser.parse_args()
    if not shutil.which("wrk"):
        log("wrk is missing: apt-get install -y wrk")
        return 2

    load_before = os.getloadavg()[0]
    fernet_key = Fernet.generate_key().decode()
    url = fresh_database("pixeltrack_import_bench")
    log(f"seeding {opts.tokens} pixels ...")
    codec = TokenCodec([fernet_key])
    tokens_file = RESULTS / "tmp" / "import-tokens.txt"
    tokens_file.parent.mkdir(parents=True, exist_ok=True)
    tokens_file.write_text("\n".join(codec.pixel_token(p) for p in seed(url, opts.tokens)) + "\n")
    redis = PrivateRedis()
    port = free_port()
    env = {
        **production_env(url, redis.url, fernet_key),
        "FIRST_ADMIN_USERNAME": ADMIN,
        "FIRST_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    api = start_api(port, env)
    base = f"http://127.0.0.1:{port}"
    try:
        token = httpx.post(f"{base}/auth/token", data={"username": ADMIN, "password": ADMIN_PASSWORD}, timeout=30)
        token.raise_for_status()
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
        campaign = httpx.post(f"{base}/api/v1/campaigns", json={"name": "imports"}, headers=auth, timeout=30)
        campaign.raise_for_status()
        body = json.dumps(
            [{"email": f"contact{i}@example.com", "name": f"Contact {i}"} for i in range(opts.rows)]
        ).encode()

        importer = Importer(base, auth, campaign.json()["id"], body)
        importer.start()
        alone: list[dict[str, Any]] = []
        during: list[dict[str, Any]] = []
        for n in range(1, opts.rounds + 1):
            log(f"round {n}: pixels alone, {opts.duration} s ...")
            alone.append(run_wrk(tokens_file, opts.duration, opts.connections, 1, port=port))
            importer.resume()
            log(f"round {n}: pixels while {opts.rows}-row imports run back to back, {opts.duration} s ...")
            during.append(run_wrk(tokens_file, opts.duration, opts.connections, 1, port=port))
            importer.pause()
        importer.stopping.set()
        importer.join(180)
    finally:
        stop(api)
        redis.stop()

    p99_alone = round(statistics.median(r["p99_ms"] for r in alone), 3)
    p99_during = round(statistics.median(r["p99_ms"] for r in during), 3)
    ratio = p99_during / p99_alone
    imports = len(importer.seconds)
    summary: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "api_as": "pixeltrack serve --no-worker --no-sample --workers 1 (as shipped), MariaDB + private Redis",
        "load_average_at_start": round(load_before, 2),
        "duration_s": opts.duration,
        "rounds": opts.rounds,
        "connections": opts.connections,
        "rows_per_import": opts.rows,
        "pixels_alone": alone,
        "pixels_during_imports": during,
        "median_p99_ms": {"alone": p99_alone, "during_imports": p99_during},
        "imports": {
            "completed": imports,
            "failed": importer.failures,
            "mean_s": round(sum(importer.seconds) / imports, 3) if imports else None,
            "max_s": round(max(importer.seconds), 3) if imports else None,
        },
        "p99_ratio": round(ratio, 2),
        "targets": {"p99 during imports <= 3x p99 alone": ratio <= 3, "every import 201": not importer.failures},
    }
    lines = [
        "# Bulk imports vs pixel latency (latest run)",
        "",
        f"{summary['when']} — {summary['machine']}; API: `pixeltrack serve --no-worker` (1 uvicorn worker, "
        f"MariaDB + Redis); wrk {opts.connections} connections, {opts.rounds} alternating rounds of {opts.duration} s "
        "per phase, same server, same run; "
        f"load average {load_before:.1f} at start (2 cores: figures from a busy machine are noisier).",
        "",
        "| round | phase | loads/s | p50 ms | p99 ms |",
        "|---:|---|---:|---:|---:|",
        *(
            f"| {n} | {phase} | {r['rps']:,.0f} | {r['p50_ms']} | {r['p99_ms']} |"
            for n, (a, d) in enumerate(zip(alone, during, strict=True), start=1)
            for phase, r in (("pixels alone", a), (f"pixels while {opts.rows:,}-row imports run back to back", d))
        ),
        "",
        f"Median p99: {p99_alone} ms alone, {p99_during} ms during imports.",
        f"Imports completed: {imports} (mean "
        f"{summary['imports']['mean_s']} s, max {summary['imports']['max_s']} s), failed: {len(importer.failures)}.",
        f"**p99 ratio: {summary['p99_ratio']}x** (target <= 3x).",
        "",
        "| target | met |",
        "|---|---|",
        *[f"| {k} | {'yes' if v else 'no'} |" for k, v in summary["targets"].items()],
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "import-latest.md").write_text("\n".join(lines))
    (RESULTS / "import-latest.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n".join(lines))
    return 0 if all(summary["targets"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
