"""A private MariaDB primary + replica pair with binlog replication (GTID), on loopback ports.

The primary writes a row-based binlog (server id 1); the replica (server id 2, `read_only=ON`)
follows it with `CHANGE MASTER TO … MASTER_USE_GTID=slave_pos` from the first event, so whatever
is created on the primary (the database, the schema, rows) reaches it. One install is copied
for the replica (a second `mariadb-install-db` would double the start-up time).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from tests.support.mariadb_server import PrivateMariaDB
from tests.support.processes import wait_until

DATABASE = "pixeltrack"
REPL_USER = "repl"
REPL_PASSWORD = "repl-test-password"


class MariaDBPair:
    def __init__(self, directory: Path) -> None:
        common = ("--binlog-format=ROW", "--skip-slave-start")
        self.primary = PrivateMariaDB(
            directory / "primary", extra_args=(*common, "--server-id=1", f"--log-bin={directory / 'primary' / 'bin'}")
        )
        self.replica = PrivateMariaDB(directory / "replica", extra_args=(*common, "--server-id=2", "--read-only=ON"))

    def url(self, server: PrivateMariaDB) -> str:
        return server.server_url(DATABASE)

    def admin(self, server: PrivateMariaDB) -> Engine:
        """A root engine on `server` (no pool: every use is a fresh connection)."""
        return create_engine(server.server_url(), poolclass=NullPool, connect_args={"connect_timeout": 5})

    def start(self) -> None:
        self.primary.install()
        self.replica.dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.primary.datadir, self.replica.datadir)
        self.primary.start()
        self.replica.start()
        with self.admin(self.primary).begin() as conn:
            conn.execute(text(f"CREATE USER '{REPL_USER}'@'127.0.0.1' IDENTIFIED BY '{REPL_PASSWORD}'"))
            conn.execute(text(f"GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'127.0.0.1'"))
            conn.execute(text(f"CREATE DATABASE `{DATABASE}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
        self.replica_sql(
            f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={self.primary.port}, "
            f"MASTER_USER='{REPL_USER}', MASTER_PASSWORD='{REPL_PASSWORD}', MASTER_USE_GTID=slave_pos, "
            "MASTER_CONNECT_RETRY=1",
            "START SLAVE",
        )
        wait_until(lambda: self.status().get("Slave_IO_Running") == "Yes", "the replica's IO thread", timeout=30)
        self.wait_caught_up()

    def replica_sql(self, *statements: str) -> None:
        with self.admin(self.replica).connect() as conn:
            for statement in statements:
                conn.execute(text(statement))

    def status(self) -> dict[str, Any]:
        with self.admin(self.replica).connect() as conn:
            row = conn.execute(text("SHOW SLAVE STATUS")).mappings().first()
        return dict(row) if row else {}

    def primary_position(self) -> str:
        with self.admin(self.primary).connect() as conn:
            return str(conn.scalar(text("SELECT @@gtid_binlog_pos")))

    def wait_caught_up(self, timeout: float = 30) -> None:
        """Until the replica has applied everything the primary has written (bounded)."""
        position = self.primary_position()
        with self.admin(self.replica).connect() as conn:
            result = conn.scalar(text("SELECT MASTER_GTID_WAIT(:pos, :timeout)"), {"pos": position, "timeout": timeout})
        assert result == 0, f"the replica did not reach {position} within {timeout} s: {self.status()}"

    def stop_sql_thread(self) -> None:
        self.replica_sql("STOP SLAVE SQL_THREAD")

    def start_sql_thread(self) -> None:
        self.replica_sql("START SLAVE SQL_THREAD")

    def stop(self) -> None:
        self.replica.stop()
        self.primary.stop()
