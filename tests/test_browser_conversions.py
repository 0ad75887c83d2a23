"""A real browser end to end (issue #15): headless Chromium (Debian `chromium` + `chromium-driver`,
driven by selenium) opens a landing page served on loopback with `pt=` in its URL; the page
includes `/t.js` from `pixeltrack serve` (a real process on another loopback port) and calls
`pixeltrack.convert('purchase', {value: 42.5, currency: 'EUR', id: 'order-1'})`; the browser gets
there by following a tracked link's click redirect (attribution on: the 302 appends `pt=`). A reload (the
token now from localStorage) does not count twice; a page of another origin is refused by CORS.

Whether a beacon was answered is read from Chromium's own network log (the DevTools events of
the performance log), so the test waits for the server's answers, never for a fixed time; the
server's shutdown flushes its in-process queue, then the rows are read.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy.orm import Session

from app.models import User
from app.settings import Settings
from app.tracking.tokens import TokenCodec
from tests import factories
from tests.support.conversions import codec, purchase, rows, shop
from tests.support.processes import free_port, wait_until
from tests.support.reports import group_of, stats
from tests.support.serve import Serve, clean_environ

pytestmark = pytest.mark.processes

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")

PAGE = """<!doctype html><html><head><title>Thanks</title>
<script async src="{tracker}/t.js?v=1" data-lifetime-days="30"></script></head>
<body><p id="status">loading</p><script>
window.addEventListener("load", function () {{
  window.sent = pixeltrack.convert("purchase", {{value: 42.5, currency: "EUR", id: "order-1"}});
  window.tokenKept = pixeltrack.token();
  fetch("{tracker}/e", {{method: "POST", headers: {{"Content-Type": "application/json"}},
    body: JSON.stringify({{pt: window.tokenKept || "none", name: "json-fetch", id: "j-1"}})}})
    .then(function (r) {{ window.jsonFetch = "status " + r.status; }})
    .catch(function () {{ window.jsonFetch = "refused"; }});
}});
</script></body></html>"""


def _need_chromium() -> None:
    if CHROMIUM and DRIVER:
        return
    message = "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (required when CI=true)", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def landing() -> Iterator[dict[str, Any]]:
    """A shop's landing page on its own loopback port (the tracker's URL is filled in later)."""
    page: dict[str, Any] = {"html": ""}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            content = page["html"].encode()
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    page["port"] = server.server_address[1]
    try:
        yield page
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def browser() -> Iterator[Any]:
    _need_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(DRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


class Answers:
    """(method, url, status) of the responses the browser has received so far, accumulated.

    Chromium's performance log hands out each entry once: a request announced in one read may be
    answered in the next, so the request ids are kept across reads (a per-read map would miss
    the answer to a request announced just before a read, and a wait would time out).
    """

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.requests: dict[str, tuple[str, str]] = {}
        self.seen: list[tuple[str, str, int]] = []

    def read(self) -> Answers:
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            params = message.get("params", {})
            if message["method"] == "Network.requestWillBeSent":
                self.requests[params["requestId"]] = (params["request"]["method"], params["request"]["url"])
            elif message["method"] == "Network.responseReceived":
                method = self.requests.get(params["requestId"], ("?", ""))[0]
                self.seen.append((method, params["response"]["url"], params["response"]["status"]))
        return self

    def posts_to_e(self, tracker: str) -> list[int]:
        return [status for method, url, status in self.seen if method == "POST" and url == f"{tracker}/e"]


def test_a_browser_converts_once_and_other_origins_are_refused(
    landing: dict[str, Any],
    browser: Any,
    settings: Settings,
    database_url: str,
    tmp_path: Path,
    db: Session,
    user: User,
    client: Any,
    headers: dict[str, str],
) -> None:
    shop_origin = f"http://127.0.0.1:{landing['port']}"
    tree = shop(db, user, origins=[shop_origin])
    with factories.one_commit(db):  # the email's tracked link, with attribution, lands on the shop's page
        tree["link"].url = f"{shop_origin}/thanks?utm_source=email"
        tree["link"].attribution = True
    env = clean_environ(
        DATABASE_URL=database_url,
        FERNET_KEY=settings.fernet_keys()[0],
        API_SECRET_KEY="browser-test-secret-" + "x" * 40,
        LOG_LEVEL="warning",
    )
    server = Serve(tmp_path, env, "--no-sample")
    try:
        server.wait_healthy()
        landing["html"] = PAGE.format(tracker=server.base)
        click = TokenCodec(settings.fernet_keys()).click_token(tree["link"].id, tree["contact"].id)
        answers = Answers(browser)

        browser.get(f"{server.base}/c/{click}")  # the click in the email: its 302 appends pt=
        wait_until(lambda: browser.execute_script("return window.sent === true"), "convert() to send", timeout=20)
        assert browser.current_url.startswith(f"{shop_origin}/thanks?utm_source=email&pt=")
        pt = browser.execute_script("return window.tokenKept")
        opened = codec(settings).open(pt)
        assert opened is not None
        assert (opened.campaign_id, opened.group_id, opened.contact_id) == (
            tree["campaign"].id,
            tree["group"].id,
            tree["contact"].id,
        )
        assert browser.execute_script("return pixeltrack.version") == "1"
        wait_until(lambda: len(answers.read().posts_to_e(server.base)) >= 2, "two answers", timeout=20)
        wait_until(lambda: browser.execute_script("return window.jsonFetch"), "the JSON fetch", timeout=20)
        assert browser.execute_script("return window.jsonFetch") == "status 204"  # preflight passed, readable
        assert sorted(answers.posts_to_e(server.base)) == [204, 204]

        # The reload: no pt in the URL now, the token comes from localStorage; the same order again.
        browser.get(f"{shop_origin}/thanks")
        wait_until(lambda: browser.execute_script("return window.sent === true"), "convert() after reload", timeout=20)
        assert browser.execute_script("return window.tokenKept") == pt
        wait_until(lambda: len(answers.read().posts_to_e(server.base)) >= 4, "the reload's", timeout=20)

        # Another origin (localhost is not 127.0.0.1): the beacon is refused, the JSON preflight too.
        browser.get(f"http://localhost:{landing['port']}/thanks?{urlencode({'pt': pt})}")
        wait_until(lambda: browser.execute_script("return window.jsonFetch"), "the refused fetch", timeout=20)
        assert browser.execute_script("return window.jsonFetch") == "refused"
        wait_until(lambda: 403 in answers.read().posts_to_e(server.base), "the 403", timeout=20)
    finally:
        server.stop()  # flushes the in-process queue
    assert server.proc.returncode == 0, server.output
    contact, group = tree["contact"], tree["group"]
    assert [r for r in rows(db) if r[2] == "purchase"] == [purchase(tree)]
    assert (contact.id, group.id) == purchase(tree)[:2]
    assert [r[5] for r in rows(db) if r[2] == "json-fetch"] == ["j-1"]  # once, though posted twice
    # In the campaign's stats, for the clicked contact's group: 2 conversions (the purchase, the
    # JSON fetch) by one converter, 42.5 EUR.
    figures = group_of(stats(client, tree["campaign"].id, headers), group.id)
    assert (figures["conversions"], figures["unique_converters"], figures["revenue"]) == (2, 1, {"EUR": "42.5000"})
