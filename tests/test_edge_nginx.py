"""Edge mode with the real engines (issue #16 part 2, docs/edge.md): a private nginx running the shipped
deploy/nginx/pixeltrack.conf in front of a real `pixeltrack serve` (Redis, its stream worker, the test's
database leg), and `pixeltrack ship` as a real process.

- loads through nginx become exactly one opening per pixel, across two SIGKILLs of `ship` and a log
  rotation (rename + `nginx -s reopen`) in the middle of the load; the Redis dedupe is off
  (DEDUPE_WINDOW_SECONDS=0) so only ship's event ids (HMAC of file identity and offset) and the
  unique `event_id` keep the lines it reads twice from becoming two openings;
- forged tokens get the GIF from nginx and are dropped and counted by ship;
- nginx's pixel answer carries the API's cache headers; the spool log is 0600; the rotated file is
  deleted once shipped; a client's own X-Forwarded-For does not reach the API.
"""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from sqlalchemy import Engine, insert, select

from app.models import Click, Contact, Link, Pixel
from app.settings import Settings
from app.tracking.tokens import TokenCodec
from tests.support.nginx_edge import PrivateNginx, nginx_binary
from tests.support.pixel_loader import PixelLoader
from tests.support.pixeltrack_process import PIXELTRACK, api_server, process_env
from tests.support.processes import free_port, stop_process, wait_until
from tests.support.redis_server import PrivateRedis
from tests.support.tracking_data import openings, seed_pixels

pytestmark = pytest.mark.processes

FORGED = 7  # forged token loads at the end
CACHE_HEADERS = ("content-type", "content-length", "cache-control", "pragma", "expires", "x-content-type-options")


class Stack(NamedTuple):
    edge: PrivateNginx
    api: str
    env: dict[str, str]
    dir: Path


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = nginx_binary()
    directory = tmp_path_factory.mktemp("edge")
    redis = PrivateRedis(directory / "redis")
    redis.start()
    env = process_env(settings, REDIS_URL=redis.url, DEDUPE_WINDOW_SECONDS="0", FORWARDED_ALLOW_IPS="127.0.0.1")
    port = free_port()
    try:
        with api_server(env, port, directory / "serve.log", directory):
            edge = PrivateNginx(directory / "nginx", [port], binary)
            edge.start()
            try:
                yield Stack(edge, f"http://127.0.0.1:{port}", env, directory)
            finally:
                edge.stop()
    finally:
        redis.stop()


class Ship:
    """`pixeltrack ship` on the edge's spool log; started again after a kill on the same state."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.out = stack.dir / "ship.out"
        self.state = stack.edge.log.with_name(".pixels.log.ship")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.out.open("ab") as out:
            argv = [
                PIXELTRACK,
                "ship",
                "--log",
                str(self.stack.edge.log),
                "--batch-size",
                "100",
                "--rotated-idle",
                "0.5",
            ]
            self.proc = subprocess.Popen(argv, env=self.stack.env, stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def totals(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.state.read_text())
        except FileNotFoundError:
            return {}
        return dict(data["totals"])

    def stop(self) -> int | None:
        stop_process(self.proc)
        return None if self.proc is None else self.proc.returncode


def test_nginx_answers_the_pixel_with_the_api_headers(stack: Stack, settings: Settings, engine: Engine) -> None:
    pixel = seed_pixels(engine, 1)[0]
    path = f"/o/{TokenCodec(settings.fernet_keys()).pixel_token(pixel)}.gif"
    for method in ("GET", "HEAD"):
        at_edge = httpx.request(method, stack.edge.base + path, timeout=10)
        from_api = httpx.request(method, stack.api + path, timeout=10)
        assert at_edge.status_code == from_api.status_code == 200
        assert {h: at_edge.headers.get(h) for h in CACHE_HEADERS} == {h: from_api.headers.get(h) for h in CACHE_HEADERS}
        assert "last-modified" not in at_edge.headers, "no validator: a cached copy must never get a 304"
        assert "etag" not in at_edge.headers
    gif = httpx.get(stack.edge.base + path, timeout=10).content
    assert gif[:6] == b"GIF89a"
    assert gif[6:10] == b"\x01\x00\x01\x00"  # 1 x 1
    # Forged (well-formed) token: the API says 404, the edge cannot tell and answers the GIF.
    forged = path[:-8] + ("A" if path[-8] != "A" else "B") + ".gif"
    assert httpx.get(stack.api + forged, timeout=10).status_code == 404
    assert httpx.get(stack.edge.base + forged, timeout=10).status_code == 200
    # Not a token at all: proxied, the API's 404 in its JSON shape; other methods: the API's answer.
    bad = httpx.get(stack.edge.base + "/o/not!a!token.gif", timeout=10)
    assert bad.status_code == 404
    assert bad.json()["code"] == "not_found"
    assert httpx.post(stack.edge.base + path, timeout=10).status_code == httpx.post(stack.api + path).status_code
    assert httpx.get(stack.edge.base + "/healthz", timeout=10).status_code == 200  # the rest is proxied
    mode = stat.S_IMODE(stack.edge.log.stat().st_mode)
    assert mode == 0o600, oct(mode)
    # The API's two loads (GET: a human split, HEAD: a machine one) are stored by the stack's stream
    # consumer; the edge's are not (no `ship` here). Waiting for them also leaves no batch in flight
    # when the test's teardown compares the report counters with the rows.
    wait_until(lambda: openings(engine, [pixel])["rows"] >= 2, "the API's loads to be stored", timeout=30)
    assert openings(engine, [pixel])["per_pixel"] == {pixel: 2}


def test_loads_land_once_across_ship_kills_and_a_rotation(stack: Stack, settings: Settings, engine: Engine) -> None:
    codec = TokenCodec(settings.fernet_keys())
    pixels = seed_pixels(engine, 4000)
    loader = PixelLoader(
        stack.edge.port, [f"/o/{codec.pixel_token(p)}.gif" for p in pixels], connections=2, pause=0.004
    )
    ship = Ship(stack)
    if stack.edge.log.exists():  # other tests' loads (their pixels' ids may be reused): not this test's
        stack.edge.log.rename(stack.edge.log.with_name("other-tests.log"))
        stack.edge.reopen()
        stack.edge.log.with_name("other-tests.log").unlink()
    rotated = stack.edge.log.with_name("pixels.log.1")
    events: list[str] = []
    try:
        _load_with_faults(stack, engine, ship, loader, pixels, codec, rotated, events)
    finally:
        loader.stop()
        code = ship.stop()  # SIGTERM: graceful
    totals = ship.totals()
    counts = openings(engine, pixels)
    print(f"\n[edge] {'; '.join(events)}; {len(loader.acked)} loads, totals {totals}, rows {counts['rows']}")
    assert code == 0
    assert loader.failed == []
    assert loader.other == []
    assert len(loader.acked) == len(pixels)
    assert {p: n for p, n in counts["per_pixel"].items() if n != 1} == {}
    assert counts["rows"] == len(pixels)  # exactly one opening per pixel...
    assert counts["distinct_event_ids"] == counts["rows"]
    assert totals["lines"] == len(pixels) + FORGED  # ...and every line counted once, across the kills
    assert totals["invalid_token"] == FORGED
    assert totals["files_deleted"] >= 1
    assert "invalid tokens dropped" in ship.out.read_text()


def _load_with_faults(
    stack: Stack,
    engine: Engine,
    ship: Ship,
    loader: PixelLoader,
    pixels: list[int],
    codec: TokenCodec,
    rotated: Path,
    events: list[str],
) -> None:
    ship.start()
    loader.start()
    wait_until(lambda: ship.totals().get("lines", 0) > 200, "ship to commit its first batches")
    ship.kill()
    events.append(f"ship SIGKILLed after {len(loader.acked)} loads")
    ship.start()
    wait_until(lambda: len(loader.acked) >= 1500, "1500 loads")
    stack.edge.log.rename(rotated)
    stack.edge.reopen()
    events.append(f"log rotated after {len(loader.acked)} loads")
    assert not loader.exhausted(), "the rotation must happen during the load"
    wait_until(lambda: len(loader.acked) >= 2500, "2500 loads")
    ship.kill()
    events.append(f"ship SIGKILLed after {len(loader.acked)} loads")
    assert not loader.exhausted(), "the kill must happen during the load"
    ship.start()
    wait_until(loader.exhausted, "every pixel loaded", timeout=60)
    loader.stop()
    forged = [codec.pixel_token(p) for p in pixels[:FORGED]]
    for token in forged:
        path = f"/o/{token[:-1]}{'A' if token[-1] != 'A' else 'B'}.gif"
        assert httpx.get(stack.edge.base + path, timeout=10).status_code == 200
    total = len(loader.acked) + FORGED
    wait_until(lambda: ship.totals().get("lines", 0) >= total, "ship to read every line", timeout=60)
    wait_until(lambda: not rotated.exists(), "ship to delete the rotated file once shipped", timeout=30)

    def stored() -> bool:
        return int(openings(engine, pixels)["rows"]) >= len(loader.acked)

    wait_until(stored, "the worker to store every opening", timeout=90, interval=0.2)


def test_the_api_records_the_address_nginx_saw_not_one_a_client_claims(
    stack: Stack, settings: Settings, engine: Engine
) -> None:
    """nginx replaces the client's X-Forwarded-For with the peer it saw; the API (FORWARDED_ALLOW_IPS:
    the edge only) takes the address from it. A click (proxied: the API answers it) shows both."""
    pixel = seed_pixels(engine, 1)[0]
    with engine.begin() as conn:
        contact, campaign = conn.execute(
            select(Pixel.contact_id, Contact.campaign_id)
            .join(Contact, Contact.id == Pixel.contact_id)
            .where(Pixel.id == pixel)
        ).one()
        key = conn.execute(
            insert(Link).values(campaign_id=campaign, url="https://example.com/x", uuid=uuid.uuid4().hex)
        ).inserted_primary_key
    assert key is not None
    link = int(key[0])
    path = f"/c/{TokenCodec(settings.fernet_keys()).click_token(link, contact)}"
    spoofed = {"X-Forwarded-For": "203.0.113.9"}
    assert httpx.get(stack.edge.base + path, headers=spoofed, timeout=10).status_code == 302
    # Straight to the API from a trusted peer the header is taken as is: the edge is what protects it.
    assert httpx.get(stack.api + path, headers=spoofed, timeout=10).status_code == 302

    def clicks() -> list[str | None]:
        with engine.connect() as conn:
            return sorted(conn.scalars(select(Click.ip).where(Click.link_id == link)), key=str)

    assert wait_until(lambda: len(clicks()) == 2 and clicks(), "both clicks stored", timeout=60) == [
        "127.0.0.1",
        "203.0.113.9",
    ]
