"""Public tracking endpoints, as documented routes.

Requests to these paths are normally answered by the ASGI fast path
(app/tracking/asgi.py) before routing; these routes share its `Tracker`, so
the behaviour is identical and the endpoints appear in the OpenAPI docs.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from app.schemas.common import ErrorOut, error_responses
from app.tracking.tracker import Reply

router = APIRouter(tags=["tracking (public)"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {
        "model": ErrorOut,
        "description": "Invalid, tampered or unknown token. Nothing is recorded.",
        "content": {"application/json": {"example": {"detail": "Not found.", "code": "not_found"}}},
    },
    **error_responses(422),  # FastAPI would document its own 422 shape; a token is any string anyway
}


def _response(reply: Reply) -> Response:
    status, headers, body = reply
    response = Response(content=body, status_code=status)
    response.raw_headers = list(headers)
    return response


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


_GIF: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"image/gif": {"schema": {"type": "string", "format": "binary"}}},
        "description": "The 43-byte transparent GIF (no body on HEAD), `Cache-Control: no-store`.",
    },
    **_NOT_FOUND,
}
_REDIRECT: dict[int | str, dict[str, Any]] = {
    302: {
        "description": "Redirect to the link's stored URL.",
        "headers": {
            "Location": {"description": "The link's stored URL.", "schema": {"type": "string", "format": "uri"}}
        },
    },
    **_NOT_FOUND,
    503: {**error_responses(503)[503], "description": "The database is unavailable and the link's URL is not cached."},
}


async def _pixel(token: str, request: Request) -> Response:
    return _response(
        await request.app.state.tracker.pixel(token, request.scope["headers"], _client_ip(request), request.method)
    )


async def _click(token: str, request: Request) -> Response:
    return _response(
        await request.app.state.tracker.click(token, request.scope["headers"], _client_ip(request), request.method)
    )


@router.get("/o/{token}.gif", response_class=Response, responses=_GIF)
async def pixel(token: str, request: Request) -> Any:
    """Tracking pixel: records an opening (unless a repeat within DEDUPE_WINDOW_SECONDS) and returns a 1x1 GIF."""
    return await _pixel(token, request)


@router.head("/o/{token}.gif", response_class=Response, responses=_GIF)
async def pixel_head(token: str, request: Request) -> Any:
    """The pixel's headers without the GIF; recorded as a machine load (prefetchers and scanners send HEAD)."""
    return await _pixel(token, request)


@router.get("/c/{token}", response_class=Response, status_code=302, responses=_REDIRECT)
async def click(token: str, request: Request) -> Any:
    """Tracked link: records a click and redirects to the link's stored URL (never one from the request)."""
    return await _click(token, request)


@router.head("/c/{token}", response_class=Response, status_code=302, responses=_REDIRECT)
async def click_head(token: str, request: Request) -> Any:
    """The redirect without a body; recorded as a machine click (link scanners send HEAD)."""
    return await _click(token, request)
