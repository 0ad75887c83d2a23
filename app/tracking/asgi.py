"""The ASGI wrapper that serves `/o/…` and `/c/…` straight from the `Tracker`.

`TrackingFastPath` wraps the whole FastAPI app (see app.main.create_asgi): pixel and click
requests are answered before FastAPI's middleware, routing, dependency injection and
instrumentation; everything else goes to FastAPI.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from app import cooperative


class TrackingFastPath:
    """Wraps the FastAPI app: `/o/{token}.gif` and `/c/{token}` never reach FastAPI at all.

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
        if scope["method"] in ("GET", "HEAD"):
            path: str = scope["path"]
            handler = None
            if path.startswith("/o/") and path.endswith(".gif"):
                handler = self.state.tracker.pixel
            elif path.startswith("/c/"):
                handler = self.state.tracker.click
            if handler is not None:
                client = scope.get("client")
                status, headers, body = await handler(
                    path[3:], scope["headers"], client[0] if client else "", scope["method"]
                )
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
                return
        await self.app(scope, receive, send)
