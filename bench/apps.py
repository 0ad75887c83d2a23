"""The two baselines the pixel benchmark measures in the same run as the real app.

- `bare_app`: a raw ASGI app that only answers the GIF (the ceiling for Python + uvicorn).
- `naive_app()`: the naive design, a FastAPI route doing SELECT + INSERT per load.
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
