"""The ASGI wrapper that serves the public tracking paths straight from the `Tracker` and the
`Intake`: `/o/…`, `/c/…`, and the conversion intake (`/e`, `/e.gif`, `/t.js`).

`TrackingFastPath` wraps the whole FastAPI app (see app.main.create_asgi): these requests are
answered before FastAPI's middleware, routing, dependency injection and instrumentation;
everything else goes to FastAPI.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from app import cooperative
from app.tracking.tracker import Reply


async def body_chunks(receive: Receive) -> AsyncIterator[bytes]:
    """The request body as it arrives."""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


class TrackingFastPath:
    """Wraps the FastAPI app: the public tracking paths never reach FastAPI at all.

    Everything else (including lifespan) goes to the wrapped app; `state` is its state. Every
    HTTP request is counted while in flight: bulk work in the threadpool steps aside for them
    (app/cooperative.py).
    """

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cooperative.arrived()
        try:
            await self._serve(scope, receive, send)
        finally:
            cooperative.left()

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        reply: Reply | None = None
        if method in ("GET", "HEAD"):
            handler = None
            if path.startswith("/o/") and path.endswith(".gif"):
                handler = self.state.tracker.pixel
            elif path.startswith("/c/"):
                handler = self.state.tracker.click
            if handler is not None:
                reply = await handler(path[3:], scope["headers"], _ip(scope), method)
            elif path == "/e.gif" and method == "GET":  # a HEAD (a scanner) records nothing
                reply = await self.state.intake.gif(scope["query_string"], scope["headers"], _ip(scope))
            elif path == "/t.js":
                reply = self.state.intake.script(scope["headers"], scope["query_string"])
        elif path == "/e":
            if method == "POST":
                reply = await self.state.intake.post(scope["headers"], _ip(scope), body_chunks(receive))
            elif method == "OPTIONS":
                reply = self.state.intake.preflight(scope["headers"])
        if reply is None:
            await self.app(scope, receive, send)
            return
        status, headers, body = reply
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


def _ip(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else ""
