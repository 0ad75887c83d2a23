"""A real HTTP receiver on loopback for the webhook tests (a threaded http.server).

It records every request (headers, body), and can fail the first N attempts, answer a fixed
status (e.g. 410), or hold its answer until the test releases it (a slow receiver).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook as Verifier


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int = 0  # the status answered (set before the answer is written: the sender may be gone)

    def json(self) -> Any:
        return json.loads(self.body)

    def verify(self, secret: str) -> Any:
        """The payload, once the Standard Webhooks package has verified its signature (raises if not)."""
        return Verifier(secret).verify(self.body, self.headers)


@dataclass
class Receiver:
    url: str = ""
    fail_first: int = 0
    status: int = 200
    hold: threading.Event | None = None  # set: answer; unset: wait (slow receiver)
    location: str | None = None  # a Location header to answer with (redirects)
    arrived: int = 0  # requests whose body was read (before any hold)
    requests: list[Received] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def events(self) -> list[dict[str, Any]]:
        """Every event of every 2xx-answered request, in arrival order."""
        with self.changed:
            pairs = list(zip(self.requests, self.answered, strict=False))
        return [e for r, code in pairs if 200 <= code < 300 for e in r.json()["data"]]

    def wait_for(self, predicate: Callable[[Receiver], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"receiver: condition not met in {timeout} s ({len(self.requests)} requests)"
                self.changed.wait(remaining)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with receiver.changed:
                receiver.arrived += 1
                receiver.changed.notify_all()
            if receiver.hold is not None:
                receiver.hold.wait(30)
            with receiver.changed:
                code = 500 if len(receiver.requests) < receiver.fail_first else receiver.status
                receiver.requests.append(Received({k.lower(): v for k, v in self.headers.items()}, body, code))
            try:
                self.send_response(code)
                if receiver.location:
                    self.send_header("location", receiver.location)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:  # the sender died meanwhile (a dispatcher killed mid-batch)
                pass
            with receiver.changed:
                receiver.answered.append(code)
                receiver.changed.notify_all()

        def log_message(self, *_args: Any) -> None:
            pass

    return Handler


@contextmanager
def running_receiver(**options: Any) -> Iterator[Receiver]:
    receiver = Receiver(**options)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        if receiver.hold is not None:
            receiver.hold.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
