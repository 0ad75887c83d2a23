"""A throwaway MariaDB server of one test: its own datadir, socket and loopback port."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from tests.support.processes import free_port, stop_process, wait_until


class PrivateMariaDB:
    """A throwaway mariadbd: own datadir, socket and loopback port (the system server is untouched)."""

    def __init__(self, directory: Path, *, extra_args: tuple[str, ...] = ()) -> None:
        self.dir = directory
        self.extra_args = extra_args  # e.g. --server-id / --log-bin (tests/support/mariadb_replication.py)
        self.datadir = directory / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.mariadbd = shutil.which("mariadbd") or (
            "/usr/sbin/mariadbd" if os.access("/usr/sbin/mariadbd", os.X_OK) else None
        )
        self.install_db = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")

    def server_url(self, database: str = "") -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}?charset=utf8mb4"

    def install(self) -> None:
        if self.mariadbd is None or self.install_db is None:
            message = "mariadbd / mariadb-install-db not installed: cannot run a private MariaDB"
            if os.environ.get("CI") == "true":
                pytest.fail(message + " (required when CI=true)", pytrace=False)
            pytest.skip(message)
        self.dir.mkdir(parents=True, exist_ok=True)
        log = self.dir / "install.log"
        with log.open("wb") as out:
            result = subprocess.run(
                [
                    self.install_db,
                    "--no-defaults",
                    "--user=root",
                    f"--datadir={self.datadir}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=120,
            )
        if result.returncode != 0:  # say why (seen once with two suites running at once)
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            raise AssertionError(f"mariadb-install-db exited {result.returncode}:\n{tail}")

    def start(self) -> None:
        assert self.mariadbd is not None
        self.proc = subprocess.Popen(
            [
                self.mariadbd,
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--socket={self.dir / 'mariadb.sock'}",
                f"--pid-file={self.dir / 'mariadb.pid'}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=64M",
                f"--log-error={self.dir / 'error.log'}",
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        proc = self.proc
        probe = create_engine(self.server_url(), poolclass=NullPool, connect_args={"connect_timeout": 2})

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"mariadbd exited ({proc.returncode}); see {self.dir / 'error.log'}")
            try:
                with probe.connect() as conn:
                    conn.execute(text("SELECT 1"))
            except SQLAlchemyError:
                return False
            return True

        try:
            wait_until(up, "the private MariaDB to accept connections", timeout=60, interval=0.05)
        finally:
            probe.dispose()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        stop_process(self.proc, timeout=30)
