"""Typed access to a running app's `state` from a TestClient.

`TestClient.app` is typed as a bare ASGI callable and `TestClient.portal` is None outside a
`with` block; these helpers check both once, so tests need no `type: ignore`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI
from starlette.datastructures import State
from starlette.testclient import TestClient

from app.tracking.asgi import TrackingFastPath

T = TypeVar("T")


def app_state(client: TestClient) -> State:
    """The app's `state` (FastAPI's, or the one TrackingFastPath of app.main.create_asgi carries)."""
    app = client.app
    assert isinstance(app, FastAPI | TrackingFastPath), f"not one of our apps: {type(app)}"
    state: State = app.state
    return state


def in_app_loop(client: TestClient, fn: Callable[..., Any], *args: Any) -> Any:
    """Run `fn(*args)` (sync or async) on the started TestClient's event loop and return its result."""
    portal = client.portal
    assert portal is not None, "the TestClient is not started: use it in a `with` block"
    return portal.call(fn, *args)


def flush_memory(client: TestClient) -> Any:
    """Flush the in-process event queue of the embedded (no Redis) mode; returns its result."""
    return in_app_loop(client, app_state(client).tracking.memory.flush)
