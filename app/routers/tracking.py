"""Public tracking endpoints, as documented routes.

Requests to these paths are normally answered by the ASGI fast path
(app/tracking/asgi.py) before routing; these routes share its `Tracker`, so
the behaviour is identical and the endpoints appear in the OpenAPI docs.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request, Response

from app.routing import PrefixRouter
from app.schemas.common import ErrorOut, error_responses
from app.schemas.conversions import ConversionName, OrderId
from app.tracking.intake import ConversionPost, Intake
from app.tracking.tracker import Reply

router = PrefixRouter(tags=["tracking (public)"])

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


# --- Conversions (docs/conversions.md): also answered by the fast path, by the same `Intake`. ---


def _refusal(status: int, description: str, code: str, detail: str) -> dict[int | str, dict[str, Any]]:
    example = {"detail": detail, "code": code}
    return {
        status: {"model": ErrorOut, "description": description, "content": {"application/json": {"example": example}}}
    }


_FORBIDDEN = _refusal(
    403,
    "The page's `Origin` is not one of the token's campaign's `conversion_origins` (or, on POST, absent).",
    "forbidden",
    "This page's origin may not post conversions of this campaign.",
)
_CONVERSION_REFUSALS: dict[int | str, dict[str, Any]] = {
    **_FORBIDDEN,
    **_refusal(
        413, "The body is larger than 4 KB.", "payload_too_large", "The request body is larger than 4096 bytes."
    ),
    **error_responses(422, 429),
    404: {
        "model": ErrorOut,
        "description": "Invalid, tampered or expired attribution token. Nothing is recorded.",
        "content": {"application/json": {"example": {"detail": "Not found.", "code": "not_found"}}},
    },
}


DECIMAL = r"^[0-9]{1,14}(\.[0-9]{1,4})?$"


def _intake(request: Request) -> Intake:
    intake: Intake = request.app.state.intake
    return intake


@router.post(
    "/e",
    status_code=204,
    response_class=Response,
    response_model=None,
    responses={
        204: {"description": "Queued (or a repeat of an order already reported): nothing to read."},
        **_CONVERSION_REFUSALS,
        **_refusal(415, "Not JSON nor plain text.", "unsupported_media_type", "Send application/json or text/plain."),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": ConversionPost.model_json_schema()},
            },
        }
    },
)
async def post_conversion(request: Request) -> Any:
    """Record a conversion from a landing page (what `pixeltrack.convert` of `/t.js` sends): the
    attribution token `pt` of the landing URL and the conversion's fields, as JSON (`text/plain`
    too: `navigator.sendBeacon` with a string). At most 4 KB; the page's `Origin` must be one of the
    token's campaign's `conversion_origins`; the same `id` counts once."""
    return _response(await _intake(request).post(request.scope["headers"], _client_ip(request), request.stream()))


@router.options("/e", status_code=204, response_class=Response, response_model=None, responses=_FORBIDDEN)
async def preflight_conversion(request: Request) -> Any:
    """The CORS preflight of POST /e: allowed for any campaign's `conversion_origins` (it carries no token)."""
    return _response(_intake(request).preflight(request.scope["headers"]))


@router.get("/e.gif", response_class=Response, responses={**_GIF, **_CONVERSION_REFUSALS})
async def conversion_gif(
    request: Request,
    pt: Annotated[str, Query(description="The attribution token of the landing URL (any other string: 404).")],
    name: Annotated[ConversionName, Query()],
    value: Annotated[str | None, Query(pattern=DECIMAL, description="A decimal ≥ 0, with `currency`.")] = None,
    currency: Annotated[str | None, Query(pattern="^[A-Za-z]{3}$", description="ISO 4217, with `value`.")] = None,
    id: Annotated[OrderId | None, Query(description="Your own id (an order id): the same id counts once.")] = None,
) -> Any:
    """Record a conversion from a page that can only place an image; answers the 1x1 GIF."""
    return _response(
        await _intake(request).gif(request.scope["query_string"], request.scope["headers"], _client_ip(request))
    )


@router.get(
    "/t.js",
    response_class=Response,
    responses={
        200: {"content": {"text/javascript": {"schema": {"type": "string"}}}, "description": "The snippet."},
        304: {"description": "Not modified (If-None-Match)."},
    },
)
async def conversion_script(request: Request) -> Any:
    """The conversion snippet (docs/conversions.md): `pixeltrack.convert(name, {value, currency, id})`.
    Cacheable; `/t.js?v=<version>` is cached for a year."""
    return _response(_intake(request).script(request.scope["headers"], request.scope["query_string"]))
