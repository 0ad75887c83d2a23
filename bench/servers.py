"""Servers the benchmarks start: a private redis-server, and the API exactly as shipped.

`start_api` runs `pixeltrack serve --no-worker --no-sample --workers N`: the same factory
(`app.main:create_asgi`), logging (the app's own: no per-request access log unless ACCESS_LOG),
middleware and process model as the compose `api` command (`uvicorn app.main:create_asgi
--factory --workers N`). The stream consumer is not part of it: the benchmarks run
`StreamWorker` (what `pixeltrack worker`, the compose `worker` service, runs) separately.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
PIXELTRACK = str(Path(sys.executable).with_name("pixeltrack"))
SERVER_URL = os.environ.get("BENCH_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4")


def fresh_database(name: str, server_url: str = SERVER_URL) -> str:
    """A new MariaDB database and a user of its own with a random password: the URL production accepts.

    Production refuses a passwordless DATABASE_URL, so the benchmarks connect as a database user
    made for the run (all privileges on that database only), as a deployment would. `server_url`:
    an administrator's URL of the server (default BENCH_MYSQL_URL, else root on 127.0.0.1:3306).
    """
    server = make_url(server_url)
    user, password = f"bench_{name}"[:32], secrets.token_urlsafe(24)
    admin = create_engine(server)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
        conn.execute(text(f"CREATE USER IF NOT EXISTS '{user}'@'%'"))
        conn.execute(text(f"ALTER USER '{user}'@'%' IDENTIFIED BY :password"), {"password": password})
        conn.execute(text(f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{user}'@'%'"))
    admin.dispose()
    url = server.set(database=name, username=user, password=password)
    return url.render_as_string(hide_password=False)


def production_env(database_url: str, redis_url: str, fernet_key: str) -> dict[str, str]:
    """The settings a production deployment has (APP_ENV=production refuses anything weaker)."""
    return {
        "APP_ENV": "production",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "FERNET_KEY": fernet_key,
        "API_SECRET_KEY": Fernet.generate_key().decode() + "-bench-secret",
        "METRICS_TOKEN": secrets.token_urlsafe(24),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrivateRedis:
    """A redis-server of this benchmark run only (never the system one: nothing to flush there)."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is missing: apt-get install -y redis-server")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="pixeltrack-bench-redis-")
        self.proc = subprocess.Popen(
            [
                *(binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
                *("--dir", self.dir, "--logfile", os.path.join(self.dir, "redis.log")),
            ],
            stdout=subprocess.DEVNULL,
        )
        atexit.register(self.stop)  # also when the benchmark fails half-way
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the private redis-server did not start") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_healthy(
    port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 60, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except OSError:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
                raise RuntimeError(f"{what} exited with {proc.returncode}\n{tail}") from None
            time.sleep(0.1)
    stop(proc)
    raise RuntimeError(f"{what} did not start")


def start_api(port: int, env: dict[str, str], workers: int = 1) -> subprocess.Popen[bytes]:
    """The API as `pixeltrack serve --no-worker` runs it; its output goes to a scratch file shown if it fails to start."""
    log = Path(tempfile.gettempdir()) / f"pixeltrack-bench-api-{port}.log"
    proc = subprocess.Popen(
        [
            *(PIXELTRACK, "serve", "--no-worker", "--no-sample", "--host", "127.0.0.1", "--port", str(port)),
            *("--workers", str(workers)),
        ],
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_healthy(port, proc, "pixeltrack serve", log=log)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
