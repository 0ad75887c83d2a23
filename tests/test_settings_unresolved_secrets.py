"""Unresolved secrets fail loudly, also under `python -O` (where an assert would vanish)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import Settings, StartupError

ROOT = Path(__file__).resolve().parent.parent


def unresolved() -> Settings:
    return Settings(_env_file=None, api_secret_key=None, fernet_key=None)


def test_unresolved_secret_key_is_a_startup_error() -> None:
    with pytest.raises(StartupError, match="API_SECRET_KEY"):
        unresolved().secret_key()


def test_unresolved_fernet_key_is_a_startup_error() -> None:
    with pytest.raises(StartupError, match="FERNET_KEY"):
        unresolved().fernet_keys()


def test_the_check_survives_python_dash_o() -> None:
    code = (
        "from app.settings import Settings, StartupError\n"
        "s = Settings(_env_file=None, api_secret_key=None, fernet_key=None)\n"
        "for call in (s.secret_key, s.fernet_keys):\n"
        "    try:\n"
        "        call()\n"
        "    except StartupError:\n"
        "        print('refused')\n"
    )
    done = subprocess.run(
        [sys.executable, "-O", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["refused", "refused"]


def test_mysql_root_password_is_not_an_app_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the mysql container (docker compose) reads it; the service ignores it.
    monkeypatch.setenv("MYSQL_ROOT_PASSWORD", "root-secret")
    assert "mysql_root_password" not in Settings.model_fields
    assert "root-secret" not in repr(Settings(_env_file=None))
