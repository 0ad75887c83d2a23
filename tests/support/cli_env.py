"""The environment a `pixeltrack` command reads (app/cli.py builds its settings from it), pointed
at this test's database and secrets; the settings cache is cleared before and after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from app.settings import Settings, get_settings


@contextmanager
def cli_environment(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", settings.sqlalchemy_url)
    monkeypatch.setenv("API_SECRET_KEY", settings.secret_key())
    monkeypatch.setenv("FERNET_KEY", settings.fernet_keys()[0])
    get_settings.cache_clear()
    try:
        yield
    finally:
        get_settings.cache_clear()
