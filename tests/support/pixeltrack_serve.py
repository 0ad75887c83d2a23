"""A real `pixeltrack serve` process on a free loopback port (what a user starts by hand)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.processes import free_port, stop_process, wait_until

PIXELTRACK = Path(sys.executable).parent / "pixeltrack"
ADMIN, ADMIN_PASSWORD = "admin", "walk-through-password"
# Configuration of the test run that must not leak into the served process.
_OURS = ("MYSQL_", "REDIS_", "API_", "FERNET", "FIRST_ADMIN", "DATABASE_URL", "APP_ENV", "SECRETS_FILE", "SQLITE_PATH")
_OURS += ("PUBLIC_BASE_URL", "DEDUPE_", "WORKER_", "ANONYMIZE_", "PROMETHEUS_MULTIPROC_DIR")


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def pixeltrack_serve(workdir: Path, database_url: str) -> Iterator[str]:
    """`pixeltrack serve` on `database_url` (migrated, first admin ADMIN, sample loaded into an empty
    database), embedded queue (no Redis); yields its base URL; its output goes to workdir/serve.log."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(_OURS)}
    env |= {"DATABASE_URL": database_url, "FIRST_ADMIN_USERNAME": ADMIN, "FIRST_ADMIN_PASSWORD": ADMIN_PASSWORD}
    base = f"http://127.0.0.1:{port}"
    with (workdir / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(PIXELTRACK), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(lambda: proc.poll() is not None or _up(base), "pixeltrack serve to be ready", timeout=90)
            if proc.poll() is not None:
                raise AssertionError(f"serve exited: {(workdir / 'serve.log').read_text(errors='replace')}")
            yield base
        finally:
            stop_process(proc)
