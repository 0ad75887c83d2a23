"""`pixeltrack serve` as a real process: the URLs it hands out, what it logs, the stream consumer it runs.

Each test starts the console script on a free port with its own SQLite file in tmp_path (the
database leg does not matter here, so these run on the SQLite leg only) and always stops it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.tracking.queue import STREAM
from tests.support.processes import free_port, wait_until
from tests.support.serve import Serve, alive, children, clean_environ, make_pixel_and_link, openings

pytestmark = [pytest.mark.sqlite_only, pytest.mark.processes]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One embedded-mode serve (no Redis) on a free, non-default port, at the default log level,
    with a pixel and a tracked link; the pixel and the link loaded once each."""
    cwd = tmp_path_factory.mktemp("serve")
    port = free_port()
    assert port != 8000
    server = Serve(cwd, clean_environ(DATABASE_URL=f"sqlite:///{cwd / 'serve.db'}"), "--no-sample", port=port)
    try:
        server.wait_healthy()
        with httpx.Client(base_url=server.base, timeout=10.0) as http:
            auth = server.login(http)
            made = make_pixel_and_link(http, auth)
            pixel = httpx.get(made["pixel_url"], timeout=10.0)
            click = httpx.get(made["click_url"], timeout=10.0)
            recorded = wait_until(lambda: openings(http, auth, made["pixel_id"]), "the opening row", timeout=30)
            yield {**made, "server": server, "pixel": pixel, "click": click, "recorded": recorded}
    finally:
        server.stop()


def test_pixel_urls_use_the_port_serve_listens_on_and_record(served: dict[str, Any]) -> None:
    server: Serve = served["server"]
    assert served["pixel_url"].startswith(f"http://127.0.0.1:{server.port}/o/"), served["pixel_url"]
    assert served["click_url"].startswith(f"http://127.0.0.1:{server.port}/c/"), served["click_url"]
    assert served["pixel"].status_code == 200
    assert served["pixel"].headers["content-type"] == "image/gif"
    assert served["click"].status_code == 302
    assert served["click"].headers["location"] == "https://example.com/landing"
    assert served["recorded"] == 1


def test_tracking_tokens_never_reach_the_log(served: dict[str, Any]) -> None:
    server: Serve = served["server"]
    server.stop()  # everything it will ever write, shutdown included
    pixel_token = served["pixel_url"].rsplit("/o/", 1)[1].removesuffix(".gif")
    click_token = served["click_url"].rsplit("/c/", 1)[1]
    assert "Uvicorn running" in server.output  # the output was captured at the default level
    assert pixel_token not in server.output
    assert click_token not in server.output
    assert "/o/" not in server.output
    assert "/c/" not in server.output


def _consumers(pid: int) -> list[int]:
    return [child for child, argv in children(pid) if argv[-2:] == ["app.cli", "worker"]]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_with_redis_runs_one_stream_consumer_and_stops_it(
    tmp_path: Path, redis_url: str, redis_client: Any, sig: signal.Signals
) -> None:
    env = clean_environ(DATABASE_URL=f"sqlite:///{tmp_path / 'serve.db'}", REDIS_URL=redis_url)
    server = Serve(tmp_path, env, "--no-sample", "--workers", "2")
    try:
        server.wait_healthy()
        consumers = wait_until(lambda: _consumers(server.proc.pid), "the stream consumer child", timeout=30)
        with httpx.Client(base_url=server.base, timeout=10.0) as http:
            auth = server.login(http)
            made = make_pixel_and_link(http, auth)
            assert httpx.get(made["pixel_url"], timeout=10.0).status_code == 200
            # Only a stream consumer moves the event from Redis into the database.
            assert wait_until(lambda: openings(http, auth, made["pixel_id"]), "the opening row", timeout=30) == 1
        assert len(_consumers(server.proc.pid)) == 1, "one consumer per serve, not one per uvicorn worker"
        everyone = dict(children(server.proc.pid))
        server.proc.send_signal(sig)
        server.proc.wait(40)
    finally:
        server.stop()
    assert server.proc.returncode == 0, server.output
    assert "Traceback" not in server.output
    # serve waits for its consumer and uvicorn for its workers; helpers such as multiprocessing's
    # resource tracker exit on their own once serve's end of their pipe closes: give them a moment.
    for pid in consumers:
        assert not alive(pid), f"the stream consumer {pid} outlived serve"
    try:
        wait_until(lambda: not any(alive(pid) for pid in everyone), "every child of serve to exit", timeout=15)
    except AssertionError:
        raise AssertionError(f"outlived serve: {[everyone[p] for p in everyone if alive(p)]}") from None


def test_no_worker_opts_out_of_the_stream_consumer(tmp_path: Path, redis_url: str, redis_client: Any) -> None:
    env = clean_environ(DATABASE_URL=f"sqlite:///{tmp_path / 'serve.db'}", REDIS_URL=redis_url)
    server = Serve(tmp_path, env, "--no-sample", "--no-worker")
    try:
        server.wait_healthy()
        with httpx.Client(base_url=server.base, timeout=10.0) as http:
            made = make_pixel_and_link(http, server.login(http))
            assert httpx.get(made["pixel_url"], timeout=10.0).status_code == 200
        wait_until(lambda: redis_client.xlen(STREAM), "the event in the stream")
        assert _consumers(server.proc.pid) == []
    finally:
        server.stop()
