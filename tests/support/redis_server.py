"""A redis-server of one test run (or one test) only: its own free loopback port and directory.

The suite never touches a Redis it did not start, so two runs on one machine cannot see each
other's keys, and flushing is safe.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import redis

from tests.support.processes import free_port, stop_process, wait_until


class PrivateRedis:
    """`durable=True`: append-only file fsynced on every write, so a SIGKILL loses nothing Redis
    acknowledged and a restart on the same port and directory resumes (fault tests)."""

    def __init__(self, directory: Path, *, durable: bool = False) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.durable = durable
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers, checking that the answer comes from our
        process: `free_port` is free only when asked, and another run (or xdist worker) may
        take the port meanwhile. On the first start, a server that could not listen (the port
        was taken) starts again on another free port; a restart keeps its port (fault tests)."""
        attempts = 3 if self.proc is None else 1
        for attempt in range(attempts):
            if self._start_once():
                return
            if attempt < attempts - 1:
                self.port = free_port()
        assert self.proc is not None
        raise AssertionError(f"redis-server exited ({self.proc.returncode}); see {self.dir / 'redis.log'}")

    def _start_once(self) -> bool:
        """True once our server answers; False if it exited first."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *persistence,
                "--dir",
                str(self.dir),
                "--daemonize",
                "no",
                "--logfile",
                str(self.dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        probe = redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=1)
        proc = self.proc

        def up() -> str | None:
            if proc.poll() is not None:
                return "exited"
            try:
                # Ours (not a server someone else started on this port), and done loading.
                return "up" if probe.info("server")["process_id"] == proc.pid and probe.ping() else None
            except redis.RedisError:  # refused, or LOADING the append-only file
                return None

        try:
            return wait_until(up, "the private redis-server to answer PING", timeout=20) == "up"
        finally:
            probe.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        stop_process(self.proc)
