"""Probes: HEAD on /healthz and /readyz, readiness that only fails for the database or schema,
and no `server` header from the shipped uvicorn commands (issue 10, item 26)."""

from __future__ import annotations

import shlex
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from app.main import create_asgi
from app.routers.health import database_checks
from app.settings import Settings
from tests.support.pixeltrack_process import api_server, process_env
from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_head_on_the_probes_answers_like_get(client: TestClient) -> None:
    for path in ("/healthz", "/readyz"):
        get, head = client.get(path), client.head(path)
        assert (get.status_code, head.status_code) == (200, 200), path
        assert head.content == b""
        assert head.headers["content-type"] == get.headers["content-type"]


def test_readyz_checks_the_schema(client: TestClient) -> None:
    assert client.get("/readyz").json() == {"status": "ok", "checks": {"database": "ok", "schema": "ok"}}


def test_readyz_is_200_and_redis_degraded_when_only_redis_is_down(settings: Settings, engine: Engine) -> None:
    """The service works without Redis (in-process queue, per-process limits): stay in rotation."""
    with TestClient(create_asgi(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))) as down:
        response = down.get("/readyz")
        head = down.head("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "degraded",
        "checks": {"database": "ok", "schema": "ok", "redis": "degraded"},
    }
    assert head.status_code == 200


def test_schema_behind_the_code_is_not_ready(engine: Engine) -> None:
    """A database migrated to another revision than this code's head is `outdated` (503)."""
    with engine.begin() as conn:
        [current] = conn.scalars(text("SELECT version_num FROM alembic_version"))
        conn.execute(text("UPDATE alembic_version SET version_num = 'not-a-revision'"))
    try:
        assert database_checks(engine) == {"database": "ok", "schema": "outdated"}
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": current})
    assert database_checks(engine) == {"database": "ok", "schema": "ok"}


@pytest.mark.processes
def test_served_process_sends_no_server_header(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    """`pixeltrack serve` (what the benchmarks and the README run) does not advertise uvicorn."""
    port = free_port()
    with api_server(process_env(settings), port, tmp_path / "serve.log", tmp_path):
        for method in ("GET", "HEAD"):
            response = httpx.request(method, f"http://127.0.0.1:{port}/healthz", timeout=10)
            assert response.status_code == 200
            assert "server" not in response.headers


def _uvicorn_argv(shell_command: str) -> list[str]:
    [step] = [s for s in shell_command.split("&&") if s.split()[:2] == ["exec", "uvicorn"]]
    return shlex.split(step)[2:]


def test_container_commands_turn_the_server_header_off() -> None:
    from uvicorn.main import main as uvicorn_cli

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    dockerfile_cmd = next(line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))
    commands = [compose["services"]["api"]["command"][2], yaml.safe_load(dockerfile_cmd[4:])[2]]
    for command in commands:
        params = uvicorn_cli.make_context("uvicorn", _uvicorn_argv(command)).params
        assert params["server_header"] is False, command
