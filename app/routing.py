"""`TransactionRoute`: an API route whose whole run is retried on a MariaDB deadlock.

A deadlock (1213) or lock wait timeout (1205) rolls the request's transaction back; the
right answer is to run that transaction again, not a 503. The request's transaction
boundary is the endpoint run with its dependencies (the session of `app.deps.get_db`), so
this route class re-runs exactly that: bounded (app/db.RETRY_ATTEMPTS) with jittered
backoff, closing the failed run's sessions first. The request body is read once and cached
on the `Request` (Starlette's `body()`/`json()`/`form()`), so every run sees the same body.
Endpoints commit once at their end, so a failed run has left nothing behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.db import RETRY_ATTEMPTS, is_transient, retry_delay

log = logging.getLogger("pixeltrack.routing")

_SESSIONS = "db_sessions"  # request.state: the sessions `get_db` handed out in this run


def remember_session(request: Request, session: Session) -> None:
    sessions: list[Session] = getattr(request.state, _SESSIONS, [])
    sessions.append(session)
    setattr(request.state, _SESSIONS, sessions)


def _close_sessions(request: Request) -> None:
    for session in getattr(request.state, _SESSIONS, []):
        session.close()  # (idempotent: get_db closes it again at the end of the request)
    setattr(request.state, _SESSIONS, [])


class TransactionRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            for attempt in range(RETRY_ATTEMPTS):
                try:
                    return await handler(request)
                except DBAPIError as exc:
                    if not is_transient(exc) or attempt == RETRY_ATTEMPTS - 1:
                        raise
                    await asyncio.to_thread(_close_sessions, request)
                    log.warning("%s %s: transaction rolled back; running it again", request.method, self.path)
                    await asyncio.sleep(retry_delay(attempt))
            raise AssertionError("unreachable")

        return run
