"""`pixeltrack serve` runs `pixeltrack dispatcher` beside the API: a pixel load on a real server
reaches a real receiver, signed; `--no-dispatcher` opts out; SIGTERM stops it with serve.
(SQLite leg: the database does not matter here; the dispatcher's logic is tested on both legs
in tests/test_webhooks.py.)"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.support.processes import wait_until
from tests.support.serve import Serve, alive, children, clean_environ, make_pixel_and_link
from tests.support.webhook_receiver import running_receiver

BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
pytestmark = [pytest.mark.sqlite_only, pytest.mark.processes]


def _dispatchers(pid: int) -> list[int]:
    return [child for child, argv in children(pid) if argv[-2:] == ["app.cli", "dispatcher"]]


def test_serve_runs_a_dispatcher_that_delivers_a_pixel_load(tmp_path: Path) -> None:
    env = clean_environ(
        DATABASE_URL=f"sqlite:///{tmp_path / 'serve.db'}", WEBHOOK_ALLOW_PRIVATE="true", WEBHOOK_POLL_SECONDS="0.05"
    )
    server = Serve(tmp_path, env, "--no-sample")
    with running_receiver() as receiver:
        try:
            server.wait_healthy()
            dispatchers = wait_until(lambda: _dispatchers(server.proc.pid), "the dispatcher child", timeout=30)
            with httpx.Client(base_url=server.base, timeout=10.0) as http:
                auth = server.login(http)
                hook = http.post("/api/v1/webhooks", json={"url": receiver.url}, headers=auth)
                assert hook.status_code == 201, hook.text
                made = make_pixel_and_link(http, auth)
                browser = {"user-agent": BROWSER_UA}  # a machine's open is not sent (include_machine false)
                assert httpx.get(made["pixel_url"], headers=browser, timeout=10.0).status_code == 200
                receiver.wait_for(lambda r: len(r.events()) == 1, timeout=60)
            (event,) = receiver.requests[0].verify(hook.json()["secret"])["data"]
            assert event["type"] == "open"
            assert event["pixel_id"] == made["pixel_id"]
            assert event["email"] == "ana@example.com"
            server.proc.send_signal(signal.SIGTERM)
            server.proc.wait(40)
        finally:
            server.stop()
    assert server.proc.returncode == 0, server.output
    assert "Traceback" not in server.output
    wait_until(lambda: not any(alive(pid) for pid in dispatchers), "the dispatcher to exit with serve", timeout=15)


def test_no_dispatcher_opts_out(tmp_path: Path) -> None:
    server = Serve(
        tmp_path, clean_environ(DATABASE_URL=f"sqlite:///{tmp_path / 'serve.db'}"), "--no-sample", "--no-dispatcher"
    )
    try:
        server.wait_healthy()
        assert children(server.proc.pid) == []
    finally:
        server.stop()
