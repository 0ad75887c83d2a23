"""Public tracking endpoints, as documented routes.

Requests to these paths are normally answered by the ASGI fast path
(app/tracking/fastpath.py) before routing; these routes share its `Tracker`, so
the behaviour is identical and the endpoints appear in the OpenAPI docs.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from app.schemas.common import ErrorOut, error_responses
from app.tracking.fastpath import Reply

router = APIRouter(tags=["tracking (public)"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "Invalid, tampered or unknown token. Nothing is recorded."},
    **error_responses(422),  # FastAPI would document its own 422 shape; a token is any string anyway
}


def _response(reply: Reply) -> Response:
    status, headers, body = reply
    response = Response(content=body, status_code=status)
    response.raw_headers = list(headers)
    return response


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


@router.get(
    "/o/{token}.gif",
    response_class=Response,
    responses={200: {"content": {"image/gif": {}}, "description": "The 43-byte transparent GIF."}, **_NOT_FOUND},
)
async def pixel(token: str, request: Request) -> Any:
    """Tracking pixel: records an opening (unless a repeat within DEDUPE_WINDOW_SECONDS) and returns a 1x1 GIF."""
    return _response(
        await request.app.state.tracker.pixel(token, request.scope["headers"], _client_ip(request), request.method)
    )


@router.get(
    "/c/{token}",
    response_class=Response,
    status_code=302,
    responses={302: {"description": "Redirect to the link's stored URL."}, **_NOT_FOUND},
)
async def click(token: str, request: Request) -> Any:
    """Tracked link: records a click and redirects to the link's stored URL (never one from the request)."""
    return _response(
        await request.app.state.tracker.click(token, request.scope["headers"], _client_ip(request), request.method)
    )
