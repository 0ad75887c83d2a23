"""The compose command lines run by hand, without Docker.

The "by hand" tests run the api's (and the worker's) compose command line as a person
would without Docker: same command, the compose environment with only what Docker
provides substituted (a SQLite file instead of MySQL, no Redis for the api, a free port,
development secrets), then poll until ready with a deadline and always stop the process.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, inspect

from tests.support.compose import (
    API_PORT,
    BY_HAND_BEARER,
    BY_HAND_METRICS_TOKEN,
    COMPOSE_ONLY,
    VENV_BIN,
    WORKER_METRICS_PORT,
    _argv,
    _console_scripts,
    _environment,
    _healthcheck_argv,
    _service,
    _settings_names,
)
from tests.support.processes import free_port

# Runnable by hand: the compose command lines, without Docker.


def _clean_environ() -> dict[str, str]:
    """This environment without PixelTracking/compose configuration, the venv's scripts first on PATH."""
    drop = _settings_names() | set(COMPOSE_ONLY)
    env = {k: v for k, v in os.environ.items() if k.upper() not in drop}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _by_hand_env(service: str, substitutions: dict[str, str]) -> dict[str, str]:
    """The service's compose environment, with what only Docker provides substituted or removed."""
    env = _clean_environ()
    env.update(_environment(_service(service)))
    env.update({"APP_ENV": "development"})
    for name, value in substitutions.items():
        if value == "":
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _by_hand_argv(command: str | list[str], replace: dict[str, str]) -> list[str]:
    """The compose command with option values replaced (e.g. --port), otherwise unchanged."""

    def patch(words: list[str]) -> list[str]:
        out = list(words)
        for i, word in enumerate(out[:-1]):
            if word in replace:
                out[i + 1] = replace[word]
        return out

    argv = _argv(command)
    if len(argv) >= 3 and argv[:2] == ["sh", "-c"]:
        parts = re.split(r"(\s*(?:&&|;)\s*)", argv[2])
        script = "".join(p if i % 2 else shlex.join(patch(shlex.split(p))) for i, p in enumerate(parts))
        return [*argv[:2], script]
    return patch(argv)


@contextlib.contextmanager
def _running(argv: list[str], env: dict[str, str], cwd: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Start argv in its own process group (uvicorn forks workers); always stop that group."""
    log = cwd / "output.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        try:
            yield proc, log
        finally:
            children = _children(proc.pid)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # the supervisor and its workers
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
            for pid in children:  # workers left behind, only if still in the group we started
                with contextlib.suppress(ProcessLookupError):
                    if os.getpgid(pid) == proc.pid:
                        os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    """Child processes of pid (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _wait_for_200(
    url: str, proc: subprocess.Popen[str], log: Path, deadline_s: float = 90.0, headers: dict[str, str] | None = None
) -> httpx.Response:
    deadline = time.monotonic() + deadline_s
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"exited with {proc.returncode} before {url} answered 200:\n{log.read_text()}")
        try:
            response = httpx.get(url, headers=headers, timeout=2.0)
            if response.status_code == 200:
                return response
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.TransportError as exc:
            last = exc.__class__.__name__
        time.sleep(0.1)  # poll interval, bounded by the deadline
    pytest.fail(f"{url} not 200 within {deadline_s}s (last: {last}):\n{log.read_text()}")


@pytest.mark.processes
@pytest.mark.sqlite_only
def test_api_compose_command_runs_by_hand(tmp_path: Path) -> None:
    port = free_port()
    db_file = tmp_path / "by-hand.db"
    metrics_dir = tmp_path / "prometheus-multiproc"  # what the tmpfs provides: an empty directory
    metrics_dir.mkdir()
    api = _service("api")
    env = _by_hand_env(
        "api",
        {
            "DATABASE_URL": f"sqlite:///{db_file}",  # instead of the mysql service
            "MYSQL_HOST": "",
            "REDIS_HOST": "",  # no Redis: in-process cache and queue
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "API_SECRET_KEY": "by-hand-secret-" + "k" * 40,
            "FERNET_KEY": Fernet.generate_key().decode(),
            "METRICS_TOKEN": BY_HAND_METRICS_TOKEN,  # what compose interpolates from .env
        },
    )
    argv = _by_hand_argv(api["command"], {"--port": str(port), "--host": "127.0.0.1"})
    assert argv != _argv(api["command"])
    with _running(argv, env, tmp_path) as (proc, log):
        ready = _wait_for_200(f"http://127.0.0.1:{port}/readyz", proc, log)
        assert ready.json()["checks"] == {"database": "ok", "schema": "ok"}
        # Migrations ran before serving.
        engine = create_engine(f"sqlite:///{db_file}")
        try:
            tables = set(inspect(engine).get_table_names())
        finally:
            engine.dispose()
        assert {"alembic_version", "users", "campaigns", "pixels", "openings"} <= tables
        # Several uvicorn workers: the supervisor has worker children.
        children = _children(proc.pid)
        assert len(children) >= 2, f"expected several uvicorn workers, found {children}"
        docs = httpx.get(f"http://127.0.0.1:{port}/docs", timeout=5.0)
        assert docs.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0).status_code == 401
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", headers=BY_HAND_BEARER, timeout=5.0)
        assert metrics.status_code == 200, metrics.text[:300]
        # The container healthcheck itself, pointed at this port, passes.
        probe = [
            part.replace(f"127.0.0.1:{API_PORT}", f"127.0.0.1:{port}")
            for part in _healthcheck_argv(api["healthcheck"]["test"])
        ]
        result = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, result.stderr
    assert proc.returncode is not None
    assert "--reload" not in " ".join(argv)


@pytest.mark.processes
@pytest.mark.sqlite_only
def test_worker_compose_command_runs_by_hand(tmp_path: Path, redis_client: Any, redis_url: str) -> None:
    port = free_port()
    worker = _service("worker")
    env = _by_hand_env(
        "worker",
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'worker.db'}",
            "MYSQL_HOST": "",
            "REDIS_HOST": "",
            "REDIS_URL": redis_url,  # the test Redis instead of the redis service
            "WORKER_METRICS_PORT": str(port),
            "WORKER_METRICS_HOST": "127.0.0.1",
            "API_SECRET_KEY": "by-hand-secret-" + "k" * 40,
            "FERNET_KEY": Fernet.generate_key().decode(),
            "METRICS_TOKEN": BY_HAND_METRICS_TOKEN,
        },
    )
    argv = _argv(worker["command"])
    assert argv[0] in _console_scripts()
    with _running(argv, env, tmp_path) as (proc, log):
        metrics = _wait_for_200(f"http://127.0.0.1:{port}/metrics", proc, log, headers=BY_HAND_BEARER)
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0).status_code == 401
        assert "pixeltrack_" in metrics.text
        probe = [
            part.replace(f"127.0.0.1:{WORKER_METRICS_PORT}", f"127.0.0.1:{port}")
            for part in _healthcheck_argv(worker["healthcheck"]["test"])
        ]
        result = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, result.stderr
