"""Bulk imports vs pixel latency (issue #10 item 9): pixel p99 with and without 10,000-row imports
running back to back, measured in the same run against the same server.

Usage (MariaDB on loopback, wrk and redis-server installed):

    .venv/bin/python -m bench.import_bench [--duration 10] [--connections 16] [--rows 10000]

1. creates a fresh MariaDB database, seeds pixels, starts a private redis-server and the API
   exactly as shipped (`pixeltrack serve --no-worker`, 1 uvicorn worker);
2. loads pixels with wrk for `--duration` seconds: the baseline p50/p99;
3. starts a client importing `--rows` contacts per request back to back (a new group each time,
   all-or-nothing bulk POST /api/v1/groups/{id}/contacts), and loads pixels again for the same
   duration while it runs;
4. prints both and the ratio (target: p99 with imports <= 3x p99 without), and writes
   bench/results/import-latest.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from cryptography.fernet import Fernet

from app.tracking.tokens import TokenCodec
from bench.pixel_bench import RESULTS, fresh_database, log, run_wrk, seed
from bench.servers import PrivateRedis, free_port, start_api, stop

ADMIN, ADMIN_PASSWORD = "bench-admin", "bench-admin-password"


class Importer(threading.Thread):
    """Posts the same `rows`-contact body to a new group of one campaign, back to back."""

    def __init__(self, base: str, auth: dict[str, str], campaign_id: int, body: bytes) -> None:
        super().__init__(daemon=True)
        self.http = httpx.Client(base_url=base, headers=auth, timeout=120.0)
        self.campaign_id = campaign_id
        self.body = body
        self.running = threading.Event()
        self.stopping = threading.Event()
        self.seconds: list[float] = []
        self.failures: list[int] = []

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of pixel load per phase (default 10)")
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
        "APP_ENV": "production",
        "DATABASE_URL": url,
        "REDIS_URL": redis.url,
        "FERNET_KEY": fernet_key,
        "API_SECRET_KEY": Fernet.generate_key().decode() + "-bench-secret",
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

        log(f"pixels alone: {opts.duration} s ...")
        alone = run_wrk(tokens_file, opts.duration, opts.connections, 1, port=port)
        importer = Importer(base, auth, campaign.json()["id"], body)
        importer.start()
        if not importer.running.wait(60):
            raise RuntimeError("the importer did not start")
        log(f"pixels while {opts.rows}-row imports run back to back: {opts.duration} s ...")
        during = run_wrk(tokens_file, opts.duration, opts.connections, 1, port=port)
        importer.stopping.set()
        importer.join(180)
    finally:
        stop(api)
        redis.stop()

    ratio = during["p99_ms"] / alone["p99_ms"]
    imports = len(importer.seconds)
    summary: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "api_as": "pixeltrack serve --no-worker --no-sample --workers 1 (as shipped), MariaDB + private Redis",
        "load_average_at_start": round(load_before, 2),
        "duration_s": opts.duration,
        "connections": opts.connections,
        "rows_per_import": opts.rows,
        "pixels_alone": alone,
        "pixels_during_imports": during,
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
        f"MariaDB + Redis); wrk {opts.connections} connections, {opts.duration} s per phase, same server, same run; "
        f"load average {load_before:.1f} at start (2 cores: figures from a busy machine are noisier).",
        "",
        "| phase | loads/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
        f"| pixels alone | {alone['rps']:,.0f} | {alone['p50_ms']} | {alone['p99_ms']} |",
        f"| pixels while {opts.rows:,}-row imports run back to back | {during['rps']:,.0f} | {during['p50_ms']} | "
        f"{during['p99_ms']} |",
        "",
        f"Imports completed during the second phase and after: {imports} (mean "
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
