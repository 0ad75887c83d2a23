"""Request bodies: authentication before the body is read, and MAX_BODY_BYTES while it streams.

A pure ASGI middleware, outside FastAPI (which reads and parses a body before it runs any
dependency, authentication included):

1. A request to the authenticated API (`/api/…`) that carries a body is answered 401 at once
   unless it has a bearer JWT with a valid signature and expiry, or an API key (`pt_…`) that
   exists and has not expired: nothing of its body is read. (The route's own dependency still
   checks the user, its token version and `is_active`.)
2. A declared `Content-Length` above the limit is answered 413 at once.
3. Otherwise the body is counted as it streams; past the limit the request is answered 413 and
   what the app does afterwards is discarded (no body is ever buffered past the limit).
"""

from __future__ import annotations

import json

from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.authn import Authenticator
from app.errors import Unauthorized
from app.services.apikeys import looks_like_key
from app.settings import Settings

AUTHENTICATED_PREFIX = "/api/"


class BodyTooLarge(Exception):
    """The body went past MAX_BODY_BYTES (raised into the app, which has been answered already)."""


def _error(status: int, detail: str, code: str, extra: list[tuple[bytes, bytes]] | None = None) -> list[Message]:
    body = json.dumps({"detail": detail, "code": code}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 413:
        headers.append((b"connection", b"close"))  # the rest of the body is not wanted
    return [
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])},
        {"type": "http.response.body", "body": body},
    ]


def _too_large(limit: int) -> list[Message]:
    return _error(413, f"The request body is larger than {limit} bytes.", "payload_too_large")


class RequestBodyGuard:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.limit = settings.max_body_bytes
        self.settings = settings

    async def _unauthenticated(self, scope: Scope, authorization: bytes | None) -> list[Message] | None:
        """The 401 of `get_current_user` for a missing or invalid bearer token, else None."""
        scheme, _, token = (authorization or b"").decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _error(401, "Not authenticated.", "not_authenticated", [(b"www-authenticate", b"Bearer")])
        auth: Authenticator = scope["app"].state.auth
        try:
            if looks_like_key(token):
                if await auth.live_key(token) is None:
                    raise Unauthorized
            else:
                auth.claims(token)
        except Unauthorized:
            return _error(401, "Invalid or expired token.", "invalid_token", [(b"www-authenticate", b"Bearer")])
        except SQLAlchemyError:
            return None  # the route's own dependency answers (503)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: int | None = None
        chunked = False
        authorization: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"authorization":
                authorization = value
        has_body = chunked or bool(length)
        if has_body and scope["path"].startswith(AUTHENTICATED_PREFIX):
            refusal = await self._unauthenticated(scope, authorization)
            if refusal is not None:
                await _send_all(send, refusal)
                return
        if length is not None and length > self.limit:
            await _send_all(send, _too_large(self.limit))
            return
        if not has_body:
            await self.app(scope, receive, send)
            return
        await self._counted(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        started = rejected = False

        async def limited_receive() -> Message:
            nonlocal received, started, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    rejected = True
                    if not started:
                        started = True
                        await _send_all(send, _too_large(self.limit))
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if rejected:
                return  # already answered 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not rejected:
                raise
            # Whatever the app made of the interrupted body (BodyTooLarge or its own error), the
            # client has its 413.


async def _send_all(send: Send, messages: list[Message]) -> None:
    for message in messages:
        await send(message)
