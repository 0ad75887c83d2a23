"""`TransactionRoute`: one transaction per API request, committed at one boundary and run
again on a MariaDB deadlock (or, for a read the replica failed, on the primary).

Services only `flush`; this route class is where the request's transaction ends. After the
endpoint has returned (dependencies still open: `app.deps.get_db` closes its session after the
response is sent) and before its response is handed to Starlette, the sessions the run opened
(`remember_session`) are committed: a plain (`def`) endpoint's session in the endpoint's own
worker thread right after it returns (`_in_one_thread`), any other in a worker thread after the
handler, none when no session began a transaction. On any error they are rolled back, so a
request that fails half-way leaves nothing behind (docs/transactions.md).

A deadlock (1213) or lock wait timeout (1205), in the handler or at the commit, rolls the
request's transaction back; the right answer is to run that transaction again, not a 503. The
request's transaction boundary is the endpoint run with its dependencies, so this route class
re-runs exactly that: bounded (app/db.RETRY_ATTEMPTS) with jittered backoff, closing the failed
run's sessions first. The request body is read once and cached on the `Request` (Starlette's
`body()`/`json()`/`form()`), so every run sees the same body. Work that must only happen once
the transaction is committed (telling other processes a link changed) is registered with
`after_commit`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute, APIRouter
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match
from starlette.types import Scope

from app.db import RETRY_ATTEMPTS, is_transient, retry_delay

log = logging.getLogger("pixeltrack.routing")

# Kept in the request's scope (a dict: reading request.state for a name it lacks raises and
# catches an AttributeError, twice per request).
_SESSIONS = "pixeltrack.db_sessions"  # the sessions `get_db` handed out in this run
_AFTER_COMMIT = "pixeltrack.after_commit"  # callbacks to run once this run has committed

AfterCommit = Callable[[], Awaitable[None]]


def remember_session(request: Request, session: Session) -> None:
    request.scope.setdefault(_SESSIONS, []).append(session)


def after_commit(request: Request, callback: AfterCommit) -> None:
    """Run `callback` once the request's transaction has committed (never if it rolls back)."""
    request.scope.setdefault(_AFTER_COMMIT, []).append(callback)


def _commit_sessions(request: Request) -> None:
    for session in request.scope.get(_SESSIONS, ()):
        session.commit()


def _in_transaction(request: Request) -> bool:
    """Whether a session of this run began a transaction (one that never ran a statement holds
    no connection: there is nothing to commit, and no worker thread is needed for it)."""
    return any(session.in_transaction() for session in request.scope.get(_SESSIONS, ()))


def _close_sessions(request: Request) -> None:
    """Roll back and close the run's sessions (get_db closes them again at the end: idempotent)."""
    for session in request.scope.get(_SESSIONS, ()):
        session.close()
    request.scope[_SESSIONS] = []
    request.scope[_AFTER_COMMIT] = []


def _replica_failed(request: Request, exc: DBAPIError) -> bool:
    """A read routed to the replica (app.deps.get_read_target) that could not reach it: the
    replica is marked down and the request runs again, reading from the primary."""
    if getattr(request.state, "read_target", None) != "replica":
        return False
    request.state.read_target = None
    return bool(request.app.state.reads.replica_failed(exc))


def _plain_function(endpoint: Callable[..., Any]) -> bool:
    return inspect.isfunction(endpoint) and not (
        inspect.iscoroutinefunction(endpoint)
        or inspect.isgeneratorfunction(endpoint)
        or inspect.isasyncgenfunction(endpoint)
    )


def _call_and_commit(endpoint: Callable[..., Any], arguments: dict[str, Any]) -> Any:
    result = endpoint(**arguments)
    for value in arguments.values():
        if isinstance(value, Session) and value.in_transaction():
            value.commit()
    return result


def _in_one_thread(endpoint: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """A plain (`def`) endpoint as a coroutine that runs it and then commits the request's session
    it was given in the same worker thread. FastAPI alone would hop to the threadpool three times
    (the endpoint, the response model's validation, then our commit); this is one hop, and the
    validation of what the endpoint built (pydantic models) costs nothing on the event loop."""

    @functools.wraps(endpoint)
    async def run(**arguments: Any) -> Any:
        return await run_in_threadpool(_call_and_commit, endpoint, arguments)

    return run


def model_response(model: BaseModel) -> Response:
    """`model` as the JSON body, serialized once by pydantic. A model returned as such is dumped,
    validated again against the route's response_model and serialized by FastAPI: ~3x the work,
    for a model built and validated already (the single-object GETs: app/fastread.py). The route
    keeps its `response_model` for the OpenAPI document."""
    return Response(model.model_dump_json(), media_type="application/json")


class TransactionRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, _in_one_thread(endpoint) if _plain_function(endpoint) else endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            for attempt in range(RETRY_ATTEMPTS):
                try:
                    response = await handler(request)
                    if _in_transaction(request):
                        await asyncio.to_thread(_commit_sessions, request)
                except DBAPIError as exc:
                    await asyncio.to_thread(_close_sessions, request)
                    if _replica_failed(request, exc) and attempt < RETRY_ATTEMPTS - 1:
                        continue  # the read again, on the primary (the replica is now marked down)
                    if not is_transient(exc) or attempt == RETRY_ATTEMPTS - 1:
                        raise
                    log.warning("%s %s: transaction rolled back; running it again", request.method, self.path)
                    await asyncio.sleep(retry_delay(attempt))
                    continue
                except Exception:
                    await asyncio.to_thread(_close_sessions, request)
                    raise
                for callback in request.scope.get(_AFTER_COMMIT, ()):
                    await callback()
                return response
            raise AssertionError("unreachable")

        return run


class PrefixRouter(APIRouter):
    """An APIRouter that says "no match" at once to a path none of its routes can match.

    FastAPI finds a request's route by asking every included router in turn, and each router
    tries each of its routes (~1 µs a route): the GET of a webhook tried ~100 routes first
    (108 µs, docs/benchmarks.md). A route's path can only match request paths that begin with
    its literal part (what comes before its first `{parameter}`); a path that begins with none
    of this router's literal parts is answered NONE without trying them. Any other path (and
    any request under a root path) goes through FastAPI's own matching, so which route answers
    is unchanged (tests/test_routing_prefix.py compares every route's paths with and without).
    The app includes these routers without a prefix: the literal parts are the routes' paths.
    """

    _literals: tuple[str, ...] = ()
    _literals_of = -1  # how many routes `_literals` was computed from

    def _literal_parts(self) -> tuple[str, ...]:
        if self._literals_of != len(self.routes):
            paths = (getattr(route, "path_format", getattr(route, "path", "")) for route in self.routes)
            self._literals = tuple({path.split("{", 1)[0] for path in paths})
            self._literals_of = len(self.routes)
        return self._literals

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and not scope.get("root_path"):
            path: str = scope["path"]
            if not path.startswith(self._literal_parts()):
                return Match.NONE, {}
        return super().matches(scope)
