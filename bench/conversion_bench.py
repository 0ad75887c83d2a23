"""Conversion intake benchmark (issue #15): `POST /e` accepted/s as a ratio to the pixel path, same run.

Usage (MariaDB and Redis on loopback, wrk installed):

    .venv/bin/python -m bench.conversion_bench [--duration 10] [--contacts 20000]

One run: a fresh MariaDB database seeded with N contacts (one pixel each) of a campaign whose
`conversion_origins` is the page's origin; `pixeltrack serve --no-worker` (1 uvicorn worker,
MariaDB + Redis, APP_ENV=production) as the compose `api` runs; wrk (64 connections) for the
same duration against the pixel (`GET /o/<token>.gif`) and against `POST /e` (one attribution
token per contact, a new order id per request: every post is queued, none deduplicated). The
per-IP rate limit is off (wrk is one IP). Then the worker drains the stream and the conversions
rows are counted (every accepted post stored once). Prints loads/s, posts/s and the ratio.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

from cryptography.fernet import Fernet
from sqlalchemy import func, insert, select

from app.clients import sync_redis
from app.db import make_engine
from app.migrations import upgrade
from app.models import Campaign, Contact, Conversion, Group, Pixel, User
from app.tracking.attribution import Attribution, AttributionCodec
from app.tracking.tokens import TokenCodec
from app.tracking.worker import StreamWorker
from bench.servers import PrivateRedis, free_port, fresh_database, production_env, start_api, stop

ORIGIN = "https://shop.example"
POST_LUA = """
local tokens, counter = {}, 0
function init(args) for line in io.lines(args[1]) do tokens[#tokens + 1] = line end end
function request()
  counter = counter + 1
  local body = '{"pt":"' .. tokens[(counter % #tokens) + 1] .. '","name":"purchase","value":"42.5",'
    .. '"currency":"EUR","id":"o-' .. tostring(id or 0) .. '-' .. counter .. '"}'
  return wrk.format("POST", "/e", {["Content-Type"] = "text/plain", ["Origin"] = "ORIGIN"}, body)
end
function setup(thread) thread:set("id", math.random(1, 1000000000)) end
""".replace("ORIGIN", ORIGIN)
GET_LUA = """
local tokens, counter = {}, 0
function init(args) for line in io.lines(args[1]) do tokens[#tokens + 1] = line end end
function request()
  counter = counter + 1
  return wrk.format("GET", "/o/" .. tokens[(counter % #tokens) + 1] .. ".gif", {["User-Agent"] = "Mozilla/5.0"})
end
"""


def seed(url: str, n: int, fernet_key: str) -> tuple[list[str], list[str]]:
    engine = make_engine(url)
    upgrade(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(insert(User), [{"username": "bench", "email": "b@example.com", "hashed_password": "x"}])
        uid = conn.scalar(select(User.id))
        campaign = {"owner_id": uid, "name": "bench", "created_at": now, "updated_at": now}
        conn.execute(insert(Campaign), [{**campaign, "conversion_origins": [ORIGIN]}])
        cid = conn.scalar(select(Campaign.id))
        conn.execute(insert(Group), [{"campaign_id": cid, "name": "A", "created_at": now}])
        gid = conn.scalar(select(Group.id))
        contact = {"campaign_id": cid, "group_id": gid, "status": "sent", "created_at": now, "updated_at": now}
        conn.execute(insert(Contact), [{**contact, "email": f"c{i}@example.com"} for i in range(n)])
        contacts = list(conn.scalars(select(Contact.id).order_by(Contact.id)))
        pixel = {"number": 1, "created_at": now}
        conn.execute(insert(Pixel), [{**pixel, "contact_id": c, "uuid": f"{c:032x}"} for c in contacts])
        pixels = list(conn.scalars(select(Pixel.id).order_by(Pixel.id)))
    engine.dispose()
    codec = TokenCodec([fernet_key])
    sealer = AttributionCodec([fernet_key], lifetime_seconds=86400)
    issued = int(time.time())
    marks = [sealer.seal(Attribution(cid, gid, c, 0, "0" * 24, issued)) for c in contacts]
    return [codec.pixel_token(p) for p in pixels], marks


def wrk(script: Path, tokens: Path, port: int, duration: int) -> float:
    out = subprocess.run(
        ["wrk", "-t1", "-c64", f"-d{duration}s", "-s", str(script), f"http://127.0.0.1:{port}", "--", str(tokens)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise SystemExit(f"{bad.group(1)} refused requests:\n{out}")
    assert found is not None, out
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--contacts", type=int, default=20_000)
    opts = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    fernet_key = Fernet.generate_key().decode()
    url = fresh_database("pt_conversion_bench")
    pixels, marks = seed(url, opts.contacts, fernet_key)
    redis = PrivateRedis()
    env = {**production_env(url, redis.url, fernet_key), "CONVERSION_RATE_LIMIT_PER_MINUTE": "0"}
    port = free_port()
    with TemporaryDirectory() as tmp:
        files = {name: Path(tmp) / name for name in ("get.lua", "post.lua", "pixels", "marks")}
        files["get.lua"].write_text(GET_LUA)
        files["post.lua"].write_text(POST_LUA)
        files["pixels"].write_text("\n".join(pixels))
        files["marks"].write_text("\n".join(marks))
        api = start_api(port, env)
        try:
            pixel_rate = wrk(files["get.lua"], files["pixels"], port, opts.duration)
            post_rate = wrk(files["post.lua"], files["marks"], port, opts.duration)
        finally:
            stop(api)
    engine = make_engine(url)
    worker = StreamWorker(sync_redis(redis.url), engine, consumer="bench", block_ms=10)
    queued = sync_redis(redis.url).xlen("pt:events")
    worker.drain()
    with engine.connect() as conn:
        stored = conn.scalar(select(func.count()).select_from(Conversion))
    print(f"pixel GET /o/…gif: {pixel_rate:,.0f} loads/s")
    print(f"POST /e:           {post_rate:,.0f} posts/s  ({post_rate / pixel_rate:.2f}x the pixel path)")
    print(f"stream entries {queued:,}; conversions stored {stored:,} (worker: {worker.stats.conversions:,})")
    engine.dispose()
    redis.stop()


if __name__ == "__main__":
    main()
