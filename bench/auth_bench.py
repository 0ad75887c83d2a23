"""Authenticated CRUD throughput vs `/healthz` (SPEC §6: authenticated single-object GET ≥ 0.3x
`/healthz`), measured in the same run against the same server.

Usage (MariaDB on loopback, wrk and redis-server installed):

    .venv/bin/python -m bench.auth_bench [--duration 10] [--rounds 2] [--connections 8]
                                         [--profile DIR] [--app-from DIR --name NAME]

1. creates a fresh MariaDB database, starts a private redis-server and the API exactly as
   shipped (`pixeltrack serve --no-worker`, 1 uvicorn worker, production settings), with the
   rate limit on (RATE_LIMIT_PER_MINUTE at its maximum, so every request still pays the shared
   Redis check but none is refused);
2. signs in as a (non-admin) user, creates a campaign and an API key for it;
3. `--rounds` times, on the same server, runs wrk for `--duration` seconds against each of
   `GET /healthz`, `GET /auth/me` and `GET /api/v1/campaigns/{id}`, the latter two with the JWT
   and with the API key (`Authorization: Bearer pt_…`);
4. prints requests/s and the ratio of each authenticated leg to `/healthz` (medians over the
   rounds; target ≥ 0.3x), and writes bench/results/auth-latest.{md,json}.

`--profile DIR` also records each authenticated leg of the first round with py-spy (it must be
installed in the venv: `.venv/bin/pip install py-spy`) into DIR as speedscope files; profiling
slows the server down, so the figures of a profiled round are not reported.

`--app-from DIR --name auth-before` serves the `app` package found in DIR instead (e.g.
`git archive <commit> app alembic | tar -x -C DIR`), to measure the code before a change against the
code after it on the same machine; a server without API keys gets the JWT legs only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from bench.servers import PrivateRedis, free_port, fresh_database, production_env, start_api, stop

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ADMIN, ADMIN_PASSWORD = "bench-admin", "bench-admin-password"
USER, USER_PASSWORD = "bench-user", "bench-user-password-7c1e"
TARGET = 0.3
PY_SPY = str(Path(sys.executable).with_name("py-spy"))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_wrk(url: str, duration: int, connections: int, authorization: str | None) -> dict[str, Any]:
    headers = ["-H", f"Authorization: {authorization}"] if authorization else []
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", *headers, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "rps": rps,
        "p99_ms": round(float(p99.group(1)) * scale[p99.group(2)], 2) if p99 else None,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(int(x) for x in socket_errors.groups()) if socket_errors else 0,
    }


def prepare(base: str) -> tuple[str, str | None, int]:
    """A user's JWT, an API key of that user (None when the server has no API keys) and a campaign id."""
    with httpx.Client(base_url=base, timeout=30) as http:
        admin = http.post("/auth/token", data={"username": ADMIN, "password": ADMIN_PASSWORD})
        admin.raise_for_status()
        as_admin = {"Authorization": f"Bearer {admin.json()['access_token']}"}
        created = http.post(
            "/api/v1/users",
            json={"username": USER, "email": "bench-user@example.com", "password": USER_PASSWORD},
            headers=as_admin,
        )
        created.raise_for_status()
        token = http.post("/auth/token", data={"username": USER, "password": USER_PASSWORD})
        token.raise_for_status()
        jwt = token.json()["access_token"]
        auth = {"Authorization": f"Bearer {jwt}"}
        campaign = http.post("/api/v1/campaigns", json={"name": "auth bench"}, headers=auth)
        campaign.raise_for_status()
        key = http.post("/api/v1/api-keys", json={"name": "auth bench"}, headers=auth)
        api_key = key.json()["key"] if key.status_code == 201 else None
        return jwt, api_key, int(campaign.json()["id"])


def legs(base: str, jwt: str, api_key: str | None, campaign_id: int) -> list[tuple[str, str, str | None]]:
    """(name, URL, Authorization header) of each measured leg; `/healthz` first."""
    out: list[tuple[str, str, str | None]] = [("GET /healthz", f"{base}/healthz", None)]
    credentials = [("JWT", f"Bearer {jwt}")] + ([("API key", f"Bearer {api_key}")] if api_key else [])
    for what, header in credentials:
        out.append((f"GET /auth/me ({what})", f"{base}/auth/me", header))
        out.append((f"GET /api/v1/campaigns/{{id}} ({what})", f"{base}/api/v1/campaigns/{campaign_id}", header))
    return out


def profile(pid: int, path: Path, seconds: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *(PY_SPY, "record", "--gil", "--pid", str(pid), "--duration", str(seconds), "--rate", "250"),
            *("--format", "speedscope", "--output", str(path)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per leg (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over every leg (default 2)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (default 8, as issue #13 measured)")
    parser.add_argument("--profile", type=Path, default=None, help="record the first round with py-spy into DIR")
    parser.add_argument(
        "--name", default="auth-latest", help="results file name in bench/results (default auth-latest)"
    )
    parser.add_argument(
        "--app-from",
        type=Path,
        default=None,
        help="serve the `app` package of another checkout (a DIR holding app/), e.g. the previous commit's, "
        "to measure before and after on the same machine",
    )
    opts = parser.parse_args()
    if not shutil.which("wrk"):
        log("wrk is missing: apt-get install -y wrk")
        return 2
    load_before = os.getloadavg()[0]
    url = fresh_database("pixeltrack_auth_bench")
    redis = PrivateRedis()
    port = free_port()
    env = {
        **production_env(url, redis.url, Fernet.generate_key().decode()),
        "FIRST_ADMIN_USERNAME": ADMIN,
        "FIRST_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "RATE_LIMIT_PER_MINUTE": "1000000",  # checked on every request, never reached
    }
    if opts.app_from is not None:
        env["PYTHONPATH"] = str(opts.app_from.resolve())
    api = start_api(port, env)
    base = f"http://127.0.0.1:{port}"
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        jwt, api_key, campaign_id = prepare(base)
        if api_key is None:
            log("this server has no API keys (POST /api/v1/api-keys): measuring the JWT legs only")
        plan = legs(base, jwt, api_key, campaign_id)
        if opts.profile is not None:
            opts.profile.mkdir(parents=True, exist_ok=True)
            for name, leg_url, header in plan:
                slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
                log(f"profiling {name} ...")
                spy = profile(api.pid, opts.profile / f"{slug}.speedscope.json", opts.duration)
                run_wrk(leg_url, opts.duration, opts.connections, header)
                spy.wait(60)
        for n in range(1, opts.rounds + 1):
            for name, leg_url, header in plan:
                log(f"round {n}: {name}, {opts.duration} s ...")
                results.setdefault(name, []).append(run_wrk(leg_url, opts.duration, opts.connections, header))
    finally:
        stop(api)
        redis.stop()

    medians = {name: statistics.median(r["rps"] for r in runs) for name, runs in results.items()}
    healthz = medians["GET /healthz"]
    ratios = {name: round(rps / healthz, 3) for name, rps in medians.items() if name != "GET /healthz"}
    failures = {name: sum(r["non_2xx"] + r["socket_errors"] for r in runs) for name, runs in results.items()}
    summary: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "api_as": "pixeltrack serve --no-worker --no-sample --workers 1 (as shipped), MariaDB + private Redis",
        "code": f"app/ from {opts.app_from}" if opts.app_from else "this tree",
        "load_average_at_start": round(load_before, 2),
        "duration_s": opts.duration,
        "rounds": opts.rounds,
        "connections": opts.connections,
        "runs": results,
        "median_rps": medians,
        "ratio_to_healthz": ratios,
        "failed_requests": failures,
        "targets": {
            **{f"{name} >= {TARGET}x /healthz": ratio >= TARGET for name, ratio in ratios.items()},
            "every request 2xx": not any(failures.values()),
            "API key legs measured": api_key is not None,
        },
    }
    write_results(summary, opts.name)
    for name, rps in medians.items():
        ratio = f"{ratios[name]:.2f}x" if name in ratios else "1.00x"
        log(f"{name:<44} {rps:>9,.0f} req/s  {ratio}")
    return 0 if all(summary["targets"].values()) else 1


def write_results(summary: dict[str, Any], stem: str) -> None:
    medians, ratios = summary["median_rps"], summary["ratio_to_healthz"]
    rounds = summary["rounds"]
    lines = [
        "# Authenticated CRUD vs /healthz (latest run)",
        "",
        f"{summary['when']} — {summary['machine']}; code: {summary['code']}; API: `pixeltrack serve --no-worker` (1 uvicorn worker, "
        "MariaDB + Redis, rate limit on); wrk 1 thread, "
        f"{summary['connections']} connections, {rounds} round(s) of {summary['duration_s']} s per leg, same "
        f"server, same run; load average {summary['load_average_at_start']:.1f} at start (2 cores shared: "
        "compare ratios, not requests/s).",
        "",
        "| leg | "
        + " | ".join(f"round {n} req/s" for n in range(1, rounds + 1))
        + " | median req/s | p99 ms | x /healthz |",
        "|---|" + "---:|" * (rounds + 3),
    ]
    for name, runs in summary["runs"].items():
        cells = " | ".join(f"{r['rps']:,.0f}" for r in runs)
        p99 = round(statistics.median(r["p99_ms"] for r in runs if r["p99_ms"] is not None), 2)
        ratio = f"**{ratios[name]:.2f}x**" if name in ratios else "1.00x"
        lines.append(f"| {name} | {cells} | {medians[name]:,.0f} | {p99} | {ratio} |")
    lines += [
        "",
        f"Target (SPEC §6): every authenticated leg ≥ {TARGET}x `/healthz`.",
        "",
        "| target | met |",
        "|---|---|",
        *[f"| {k} | {'yes' if v else 'no'} |" for k, v in summary["targets"].items()],
        "",
        f"Command: `.venv/bin/python -m bench.auth_bench`; raw figures in `{stem}.json`.",
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.md").write_text("\n".join(lines))
    (RESULTS / f"{stem}.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
