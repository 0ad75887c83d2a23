"""HTTP hardening for the API: security headers on every response, CORS when configured."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.settings import Settings

_COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"interest-cohort=()"),
]
# The JSON API loads nothing; /docs and /redoc run inline scripts (Swagger UI / ReDoc, served
# locally under /static-offline-docs), so they get the headers above but not this policy.
_API_ONLY = [
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
]
_NO_STORE = (b"cache-control", b"no-store")
_DOCS = ("/docs", "/redoc")


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        extra = list(_COMMON)
        if not path.startswith(_DOCS):
            extra += _API_ONLY
        private = path.startswith(("/api/", "/auth/"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in extra if k not in present]
                if private and b"cache-control" not in present:
                    headers.append(_NO_STORE)  # authenticated data: never in a shared cache
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_http_middleware(app: FastAPI, settings: Settings) -> None:
    """CORS only for the origins listed in CORS_ORIGINS. Bearer tokens are not cookies, so
    credentials are never allowed (and a wildcard origin can never be combined with them)."""
    origins = settings.cors_origin_list
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_credentials=False,
            allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(SecurityHeaders)
