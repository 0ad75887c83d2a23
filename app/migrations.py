"""Run Alembic migrations from code (CLI `migrate`/`serve`, tests). Never `create_all`.

The migration scripts ship inside the package (app/data/alembic, a link to the repository's
top-level alembic/ that the wheel turns into a copy) and are found through importlib.resources,
so an installed `pixeltrack` migrates from any working directory.
"""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool


def script_location() -> Path:
    """The migration scripts: a real directory (Alembic imports them from files), never a zip."""
    with as_file(files("app").joinpath("data", "alembic")) as path:
        if not (path / "env.py").is_file():
            raise RuntimeError(f"migration scripts missing from the package: {path}")
        return path


def alembic_config() -> Config:
    # No alembic.ini: its logging sections are not used from code (skip_logging_config),
    # and script_location comes from the package.
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location()))
    cfg.set_main_option("path_separator", "os")
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
