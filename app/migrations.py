"""Run Alembic migrations from code (CLI `migrate`/`serve`, tests). Never `create_all`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parent.parent


def alembic_config() -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.attributes["skip_logging_config"] = True
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    if engine.url.get_backend_name() == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
    cfg = alembic_config()
    migrating = engine
    if engine.dialect.name in ("mysql", "mariadb"):
        # Its own connection without read/write timeouts: an ALTER TABLE on a big table may
        # legitimately run longer than DATABASE_READ_TIMEOUT_SECONDS.
        migrating = create_engine(engine.url, poolclass=NullPool, hide_parameters=True)
    try:
        with migrating.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
    finally:
        if migrating is not engine:
            migrating.dispose()
