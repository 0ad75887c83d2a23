"""The two baselines the pixel benchmark measures in the same run as the real app.

- `bare_app`: a raw ASGI app that only answers the GIF (the ceiling for Python + uvicorn).
- `naive_app()`: the naive design, a FastAPI route doing SELECT + INSERT per load.

And the send-time benchmark's baseline:
- `stream_app`: a raw ASGI app that streams STREAM_LINES NDJSON lines of STREAM_LINE_BYTES bytes
  (what reading a render stream of that size costs the client and the loopback, with no work behind it).
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from fastapi import FastAPI, Request, Response
from sqlalchemy import select

from app.db import make_engine, make_sessionmaker
from app.models import Contact, Opening, Pixel
from app.tracking.classify import classify
from app.tracking.tokens import TokenCodec
from app.tracking.tracker import GIF, GIF_HEADERS


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": GIF_HEADERS})
    await send({"type": "http.response.body", "body": GIF})


def naive_app() -> FastAPI:
    engine = make_engine(os.environ["DATABASE_URL"])
    sessions = make_sessionmaker(engine)
    codec = TokenCodec([os.environ["FERNET_KEY"]])
    classify("warm-up")  # loads the pattern data once, before the first request (seconds on first use)
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/o/{token}.gif")
    def pixel(token: str, request: Request) -> Response:
        ref = codec.decode_pixel(token)
        if ref is None:
            return Response(status_code=404)
        with sessions() as db:
            row = db.execute(
                select(Pixel.id, Contact.id, Contact.campaign_id)
                .join(Contact, Contact.id == Pixel.contact_id)
                .where(Pixel.id == ref.pixel_id)
            ).first()
            if row is None:
                return Response(status_code=404)
            ua = request.headers.get("user-agent", "")
            db.add(
                Opening(
                    pixel_id=row[0],
                    contact_id=row[1],
                    campaign_id=row[2],
                    event_id=uuid.uuid4().hex,
                    client=classify(ua).client.value,
                    user_agent=ua,
                )
            )
            db.commit()
        return Response(content=GIF, media_type="image/gif")

    return app


async def stream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/healthz":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    lines, size = int(os.environ["STREAM_LINES"]), int(os.environ["STREAM_LINE_BYTES"])
    line = b'{"contact_id": 1, "html": "' + b"x" * max(0, size - 30) + b'"}\n'
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/x-ndjson")]})
    for start in range(0, lines, 100):
        await send({"type": "http.response.body", "body": line * min(100, lines - start), "more_body": True})
    await send({"type": "http.response.body", "body": b""})
