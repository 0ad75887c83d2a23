"""docs/configuration.md is generated from the Settings model and cannot drift from it or .env.example."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gen_config_docs.py"


def _gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_config_docs", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class WithNewField(Settings):
    export_timeout_seconds: float = 5.0
    """How long an export may take."""


class WithUndescribedField(Settings):
    undocumented_knob: int = 3


def test_configuration_page_and_env_example_match_the_settings() -> None:
    gen = _gen()
    assert gen.problems() == []
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for name, field in Settings.model_fields.items():
        assert f"| `{name.upper()}` |" in page
        assert field.description
        assert field.description in page


@pytest.mark.processes
def test_the_check_command_passes_on_the_repository() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_a_new_setting_makes_the_page_and_env_example_out_of_date(tmp_path: Path) -> None:
    gen = _gen()
    doc = tmp_path / "configuration.md"
    doc.write_text(gen.render(), encoding="utf-8")  # up to date with today's model
    found = gen.problems(WithNewField, doc=doc)
    assert any("configuration.md is out of date" in problem for problem in found)
    assert ".env.example lacks EXPORT_TIMEOUT_SECONDS" in found
    rendered = gen.render(WithNewField)
    assert "| `EXPORT_TIMEOUT_SECONDS` | float | `5.0` | How long an export may take. |" in rendered


def test_a_setting_without_description_is_reported(tmp_path: Path) -> None:
    gen = _gen()
    assert gen.missing_descriptions(WithUndescribedField) == ["UNDOCUMENTED_KNOB"]
    assert gen.missing_descriptions() == []


def test_env_example_naming_an_unknown_variable_is_reported(tmp_path: Path) -> None:
    gen = _gen()
    env_example = tmp_path / ".env.example"
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    env_example.write_text(text + "\n# REMOVED_LONG_AGO=1\n", encoding="utf-8")
    assert gen.env_example_problems(path=env_example) == [
        ".env.example names REMOVED_LONG_AGO, which the settings do not have"
    ]
    env_example.write_text(text.replace("\nRESPECT_DNT=false", "\n"), encoding="utf-8")
    assert gen.env_example_problems(path=env_example) == [".env.example lacks RESPECT_DNT"]
