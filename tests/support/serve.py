"""`pixeltrack serve` as a real child process: its output collected, its API driven with httpx."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import free_port, stop_process, wait_until

PIXELTRACK = Path(sys.executable).with_name("pixeltrack")
ADMIN, ADMIN_PASSWORD = "admin", "walk-through-password"
_CONFIG_PREFIXES = (
    "MYSQL_",
    "REDIS_",
    "API_",
    "FERNET",
    "FIRST_ADMIN",
    "DATABASE_URL",
    "APP_ENV",
    "SECRETS_FILE",
    "SQLITE_PATH",
    "PUBLIC_BASE_URL",
    "DEDUPE_",
    "WORKER_",
    "ANONYMIZE_",
    "LOG_LEVEL",
    "ACCESS_LOG",
    "MAX_BODY_BYTES",
    "PROMETHEUS_MULTIPROC_DIR",
)


def clean_environ(**extra: str) -> dict[str, str]:
    """This environment without any PixelTracking configuration, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(_CONFIG_PREFIXES)}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


class Serve:
    """`pixeltrack serve --host 127.0.0.1 --port <free> *args` in `cwd`, stdout and stderr collected."""

    def __init__(self, cwd: Path, env: dict[str, str], *args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [str(PIXELTRACK), "serve", "--host", "127.0.0.1", "--port", str(self.port), *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_healthy(self, timeout: float = 90.0) -> None:
        def healthy() -> bool:
            if self.proc.poll() is not None:
                self._reader.join(timeout=5)
                raise AssertionError(f"serve exited with {self.proc.returncode}:\n{self.output}")
            try:
                return httpx.get(f"{self.base}/healthz", timeout=1.0).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, "serve to answer /healthz", timeout=timeout, interval=0.1)

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until /readyz is 200: migrated, first admin created, sample loaded."""

        def ready() -> bool:
            if self.proc.poll() is not None:
                self._reader.join(timeout=5)
                raise AssertionError(f"serve exited with {self.proc.returncode}:\n{self.output}")
            try:
                return httpx.get(f"{self.base}/readyz", timeout=1.0).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, "serve to answer /readyz", timeout=timeout, interval=0.1)

    def wait_for_line(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """The first output line matching `pattern` (polled until `timeout`)."""

        def matching() -> re.Match[str] | None:
            return next((m for line in list(self.lines) if (m := re.search(pattern, line))), None)

        found = wait_until(matching, f"a line matching {pattern!r}", timeout=timeout, interval=0.05)
        assert found is not None  # wait_until returns a truthy value only
        return found

    def login(self, http: httpx.Client) -> dict[str, str]:
        """Log in as the admin whose generated password serve printed."""
        match = self.wait_for_line(r"username '([^']+)', password '([^']+)'")
        token = http.post("/auth/token", data={"username": match.group(1), "password": match.group(2)})
        assert token.status_code == 200, token.text
        return {"Authorization": f"Bearer {token.json()['access_token']}"}

    def stop(self) -> None:
        stop_process(self.proc, timeout=40)
        self._reader.join(timeout=5)


@contextmanager
def served_with_sample(cwd: Path, database_url: str) -> Iterator[str]:
    """`pixeltrack serve` as a user starts it (first admin ADMIN, sample loaded into an empty
    database, embedded queue), on `database_url`; yields its base URL."""
    env = clean_environ(DATABASE_URL=database_url, FIRST_ADMIN_USERNAME=ADMIN, FIRST_ADMIN_PASSWORD=ADMIN_PASSWORD)
    server = Serve(cwd, env)
    try:
        server.wait_ready()
        yield server.base
    finally:
        server.stop()


def make_pixel_and_link(http: httpx.Client, auth: dict[str, str]) -> dict[str, Any]:
    """A campaign with one contact, its pixel and one link: ids and the public tracking URLs."""

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = http.post(path, json=body, headers=auth)
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data

    campaign = post("/api/v1/campaigns", {"name": "served"})
    group = post(f"/api/v1/campaigns/{campaign['id']}/groups", {"name": "A"})
    contact = post(f"/api/v1/groups/{group['id']}/contacts", {"email": "ana@example.com"})
    pixel = post(f"/api/v1/contacts/{contact['id']}/pixels", {})
    link = post(f"/api/v1/campaigns/{campaign['id']}/links", {"url": "https://example.com/landing"})
    tracked = http.get(f"/api/v1/links/{link['id']}/url", params={"contact_id": contact["id"]}, headers=auth)
    assert tracked.status_code == 200, tracked.text
    return {"pixel_id": pixel["id"], "pixel_url": pixel["url"], "click_url": tracked.json()["url"]}


def openings(http: httpx.Client, auth: dict[str, str], pixel_id: int) -> int:
    response = http.get(f"/api/v1/pixels/{pixel_id}/openings", headers=auth)
    assert response.status_code == 200, response.text
    total: int = response.json()["total"]
    return total


def children(pid: int) -> list[tuple[int, list[str]]]:
    """(pid, argv) of the live processes whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append((int(entry.name), [a.decode() for a in argv if a]))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"
