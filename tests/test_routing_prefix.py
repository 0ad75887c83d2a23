"""app.routing.PrefixRouter: every request path finds the same route as with FastAPI's own matching."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRouter
from starlette.routing import BaseRoute, Match

from app.main import create_app
from app.routing import PrefixRouter
from app.settings import Settings

METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS")
OTHER_PATHS = ("/", "/api", "/api/v1", "/api/v1/", "/auth", "/o", "/o/", "/c/x", "/docs", "/nothing/5", "/api/v2/x")


def _paths(app: FastAPI) -> set[str]:
    """Each route's path with its parameters as an id, a word, an empty string; with and without
    a trailing slash; and paths no route has."""
    paths = set(OTHER_PATHS)
    for route in app.routes:
        contexts = route.effective_route_contexts() if hasattr(route, "effective_route_contexts") else [route]
        for effective in contexts:
            template = str(getattr(effective, "path_format", None) or getattr(route, "path", ""))
            for value in ("7", "abc", ""):
                path = re.sub(r"\{[^}]*\}", value, template)
                paths |= {path, path.rstrip("/") or "/", path + "/"}
    return paths


def _decision(routes: list[BaseRoute], method: str, path: str) -> tuple[Any, ...]:
    """Which top-level route FastAPI's router would take (first FULL, else first PARTIAL) and the
    scope its match adds."""
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": [], "query_string": b""}
    partial = None
    for index, route in enumerate(routes):
        match, child = route.matches(dict(scope))
        if match == Match.FULL:
            return ("full", index, sorted(child.get("path_params", {}).items()))
        if match == Match.PARTIAL and partial is None:
            partial = ("partial", index, sorted(child.get("path_params", {}).items()))
    return partial or ("none",)


def test_every_router_of_the_app_is_a_prefix_router(settings: Settings) -> None:
    included = [route for route in create_app(settings).routes if hasattr(route, "original_router")]
    assert len(included) >= 16
    assert all(isinstance(route.original_router, PrefixRouter) for route in included)


def test_the_same_route_as_fastapis_own_matching(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(settings)
    paths = sorted(_paths(app))
    assert len(paths) > 200
    ours = {(method, path): _decision(app.routes, method, path) for method in METHODS for path in paths}
    monkeypatch.setattr(PrefixRouter, "matches", APIRouter.matches)
    fastapi = {(method, path): _decision(app.routes, method, path) for method in METHODS for path in paths}
    assert ours == fastapi
    assert sum(decision[0] == "full" for decision in ours.values()) > 100


def test_a_route_added_later_is_matched(settings: Settings) -> None:
    router = PrefixRouter()

    @router.get("/first/{x}")
    def first(x: str) -> str:
        return x

    assert router._literal_parts() == ("/first/",)

    @router.get("/later/{x}")
    def later(x: str) -> str:
        return x

    assert "/later/" in router._literal_parts()
    app = FastAPI()
    app.include_router(router)
    assert _decision(app.routes, "GET", "/later/1")[0] == "full"
