"""Conversions from landing pages (issue #15): `POST /e` accepted per second, as a ratio to the
pixel path (`GET /o/<token>.gif`) measured in the same run against the same server.

1. A fresh MariaDB database (its own user and password: production refuses less) and a private
   redis-server; N contacts with a pixel each, in a campaign whose pages at ORIGIN may post.
2. `pixeltrack serve --no-worker` exactly as shipped (production settings, 1 uvicorn worker);
   CONVERSION_RATE_LIMIT_PER_MINUTE is raised so the per-IP limit (still checked on every post,
   in Redis) does not refuse wrk's one address.
3. Rounds alternate wrk on the pixel path and on POST /e (a new order id per post: each accepted
   post is a new conversion), `--duration` s each; the figures are medians over the rounds.
4. The stream is drained by the worker, and the conversions stored are counted: at least the
   posts answered 204 (nothing lost), at most the posts sent (nothing twice: wrk stops with up to
   one post per connection in flight, which the server may still have stored).
Writes bench/results/conversion-latest.{md,json}. Target: POST /e ≥ 0.5x the pixel path.

Run: `.venv/bin/python -m bench.conversion_bench [--duration 10] [--rounds 3] [--tokens 20000]`
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
import time
from datetime import UTC, datetime
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import func, insert, select, update

from app.clients import sync_redis
from app.db import make_engine
from app.models import Campaign, Contact, Conversion, Group, Link
from app.tracking.attribution import Attribution, AttributionCodec
from app.tracking.events import new_event_id
from app.tracking.tokens import TokenCodec
from app.tracking.worker import StreamWorker
from bench.pixel_bench import PORT, RESULTS, ROOT, log, run_wrk, seed, stop_server
from bench.servers import PrivateRedis, fresh_database, production_env, start_api

ORIGIN = "https://shop.bench.example"


def conversion_wrk(tokens_file: Any, duration: int, connections: int, threads: int, round_: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            *("wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"),
            *("-s", str(ROOT / "bench" / "conversion_load.lua"), f"http://127.0.0.1:{PORT}"),
            *("--", str(tokens_file), str(threads), ORIGIN, str(round_)),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    refused = int(errors.group(1)) if errors else 0
    return {
        "requests": total,
        "made": int(re.search(r"MADE (\d+)", out).group(1)),  # type: ignore[union-attr]
        "non_2xx": refused,
        "accepted_per_s": (total - refused) / duration,
        "p50_ms": int(re.search(r"P50_US (\d+)", out).group(1)) / 1000,  # type: ignore[union-attr]
        "p99_ms": int(re.search(r"P99_US (\d+)", out).group(1)) / 1000,  # type: ignore[union-attr]
    }


def attribution_tokens(url: str, fernet_key: str, n: int) -> list[str]:
    """The campaign's pages may post (ORIGIN); one attribution token per contact, as its clicks would carry."""
    engine = make_engine(url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        campaign_id = conn.scalar(select(Campaign.id))
        conn.execute(update(Campaign).values(conversion_origins=[ORIGIN], attribution_default=True))
        group_id = conn.scalar(select(Group.id))
        conn.execute(
            insert(Link).values(
                campaign_id=campaign_id, url="https://shop.bench.example/", uuid="b" * 32, created_at=now
            )
        )
        link_id = conn.scalar(select(Link.id))
        contacts = list(conn.scalars(select(Contact.id).order_by(Contact.id).limit(n)))
    engine.dispose()
    codec = AttributionCodec([fernet_key], lifetime_seconds=86_400)
    issued = int(time.time())
    return [codec.seal(Attribution(campaign_id, group_id, c, link_id, new_event_id(), issued)) for c in contacts]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per round and path (default 10)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=20_000, help="contacts (pixel and attribution tokens)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: the other core serves)")
    opts = parser.parse_args()
    if not shutil.which("wrk"):
        log("wrk is missing: apt-get install -y wrk")
        return 2
    load_before = os.getloadavg()[0]
    fernet_key = Fernet.generate_key().decode()
    url = fresh_database("pixeltrack_conv_bench")
    log(f"seeding {opts.tokens} contacts and pixels ...")
    pixel_ids = seed(url, opts.tokens)
    scratch = RESULTS / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    pixel_file, conversion_file = scratch / "tokens.txt", scratch / "attribution-tokens.txt"
    pixel_file.write_text("\n".join(TokenCodec([fernet_key]).pixel_token(p) for p in pixel_ids) + "\n")
    conversion_file.write_text("\n".join(attribution_tokens(url, fernet_key, opts.tokens)) + "\n")
    private_redis = PrivateRedis()
    env = {**production_env(url, private_redis.url, fernet_key), "CONVERSION_RATE_LIMIT_PER_MINUTE": "1000000"}
    pixel: list[dict[str, Any]] = []
    conversion: list[dict[str, Any]] = []
    proc = start_api(PORT, env)
    try:
        for round_ in range(opts.rounds):
            log(f"round {round_ + 1}/{opts.rounds}: pixel path, then POST /e ...")
            pixel.append(run_wrk(pixel_file, opts.duration, opts.connections, opts.threads))
            conversion.append(conversion_wrk(conversion_file, opts.duration, opts.connections, opts.threads, round_))
    finally:
        stop_server(proc)
    redis = sync_redis(private_redis.url)
    engine = make_engine(url)
    log("draining the stream ...")
    StreamWorker(redis, engine, consumer="bench", batch_size=2000).drain()
    with engine.connect() as conn:
        stored = conn.scalar(select(func.count()).select_from(Conversion)) or 0
    engine.dispose()
    private_redis.stop()

    accepted = sum(c["requests"] - c["non_2xx"] for c in conversion)
    sent = sum(c["made"] for c in conversion)
    ok = accepted <= stored <= sent
    pixel_rate = statistics.median(p["rps"] for p in pixel)
    conversion_rate = statistics.median(c["accepted_per_s"] for c in conversion)
    ratio = conversion_rate / pixel_rate
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_at_start": round(load_before, 2),
        "api_as": "pixeltrack serve --no-worker --no-sample --workers 1, production settings, MariaDB + Redis",
        "rounds": {"pixel": pixel, "conversion": conversion},
        "pixel_loads_per_s": round(pixel_rate),
        "conversions_accepted_per_s": round(conversion_rate),
        "ratio": round(ratio, 3),
        "row_check": {"accepted_posts": accepted, "posts_sent": sent, "conversions_stored": stored, "ok": ok},
        "targets": {"POST /e >= 0.5x pixel path": ratio >= 0.5, "nothing lost or twice": ok},
    }
    lines = [
        "# Conversion intake benchmark (latest run)",
        "",
        f"{summary['when']}, {summary['machine']}, load average {load_before:.1f} at start; wrk {opts.connections} "
        f"connections, {opts.rounds} rounds of {opts.duration} s per path, alternating; API as shipped.",
        "",
        "| round | pixel loads/s | POST /e accepted/s | POST /e p99 |",
        "|---:|---:|---:|---:|",
        *(
            f"| {i + 1} | {p['rps']:,.0f} | {c['accepted_per_s']:,.0f} | {c['p99_ms']} ms |"
            for i, (p, c) in enumerate(zip(pixel, conversion, strict=True))
        ),
        "",
        f"Medians: pixel {pixel_rate:,.0f}/s, POST /e {conversion_rate:,.0f}/s: **{ratio:.3f}x** (target ≥ 0.5x).",
        f"Row check: {accepted:,} posts answered 204 of {sent:,} sent, {stored:,} conversions stored after the drain "
        f"({'OK' if ok else 'MISMATCH'}: answered ≤ stored ≤ sent).",
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "conversion-latest.json").write_text(json.dumps(summary, indent=2) + "\n")
    (RESULTS / "conversion-latest.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if all(summary["targets"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
