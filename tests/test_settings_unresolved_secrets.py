"""Unresolved secrets and insecure production settings fail loudly, also under `python -O` (where
an assert would vanish)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import Settings, StartupError, check_and_fill_secrets

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


PRODUCTION_UNDER_DASH_O = """
import sys
from app.settings import Settings, StartupError, check_and_fill_secrets
print("optimize", sys.flags.optimize)
try:
    Settings(_env_file=None, app_env="production", api_secret_key="change-me", metrics_token="x" * 40)
except StartupError as exc:
    print("refused", "API_SECRET_KEY" in str(exc), "FERNET_KEY" in str(exc))
development = Settings(_env_file=None, api_secret_key="change-me", metrics_token="x" * 40)
try:  # model_copy() skips validators: what get_settings() runs refuses it again
    check_and_fill_secrets(development.model_copy(update={"app_env": "production"}))
except StartupError:
    print("refused again")
"""


def test_production_refusal_survives_python_dash_o(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "SECRETS_FILE": str(tmp_path / "secrets.json")}
    done = subprocess.run(
        [sys.executable, "-O", "-c", PRODUCTION_UNDER_DASH_O],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["optimize 1", "refused True True", "refused again"]
    assert not (tmp_path / "secrets.json").exists(), "production never generates secrets"


def test_settings_copied_into_production_are_refused_by_the_startup_check() -> None:
    development = Settings(_env_file=None, api_secret_key="change-me", fernet_key=None)
    with pytest.raises(StartupError, match="API_SECRET_KEY"):
        check_and_fill_secrets(development.model_copy(update={"app_env": "production"}))


def test_mysql_root_password_is_not_an_app_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the mysql container (docker compose) reads it; the service ignores it.
    monkeypatch.setenv("MYSQL_ROOT_PASSWORD", "root-secret")
    assert "mysql_root_password" not in Settings.model_fields
    assert "root-secret" not in repr(Settings(_env_file=None))
