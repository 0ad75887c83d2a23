"""Habits (issue #11 item 8): pre-commit hooks, the Makefile's targets, a clean spell check, and
coverage reported by the test command."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=REPO, env=os.environ | env, capture_output=True, text=True, timeout=300, check=False
    )


def test_pre_commit_runs_ruff_ruff_format_mypy_and_a_spell_checker() -> None:
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert {"ruff-check", "ruff-format", "mypy", "typos"} <= set(hooks)
    assert hooks["mypy"]["pass_filenames"] is False  # strict over the whole of app/, as in CI
    assert "tests" in hooks["mypy-tests"]["entry"].split()  # tests/ too, as in CI
    validated = _run([str(BIN / "pre-commit"), "validate-config", ".pre-commit-config.yaml"])
    assert validated.returncode == 0, validated.stdout + validated.stderr


def test_the_repository_spells_clean() -> None:
    """The hook's spell checker passes on the repository as it is (false positives in pyproject.toml)."""
    checked = _run([str(BIN / "typos"), "--format", "brief"])
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_makefile_has_the_everyday_targets() -> None:
    planned = {}
    for target in ("lint", "test-fast", "test", "test-mysql", "bench"):
        dry = _run(["make", "-n", target])
        assert dry.returncode == 0, dry.stderr
        planned[target] = dry.stdout
    assert "ruff check" in planned["lint"]
    assert "ruff format --check" in planned["lint"]
    assert "mypy" in planned["lint"]
    assert "typos" in planned["lint"]
    # The fast loop: in parallel, and without coverage (which doubles its CPU time).
    for word in ("pytest", "not slow", "sqlite", "-n"):
        assert word in shlex.split(planned["test-fast"]), word
    assert "scripts/test.sh" in planned["test"]  # the one test command of README and CI
    for word in ("pytest", "mysql", "--cov=app"):
        assert word in shlex.split(planned["test-mysql"]), word
    assert "bench." in planned["bench"]


def test_the_test_command_reports_coverage() -> None:
    script = (REPO / "scripts" / "test.sh").read_text(encoding="utf-8")
    (pytest_line,) = [line for line in script.splitlines() if "-m pytest" in line]
    assert "--cov=app" in pytest_line
    assert "--cov-report=term" in pytest_line
    installs = [line for line in script.splitlines() if "pip install" in line]
    assert any("[dev]" in line for line in installs)  # keeps installing what CI needs (pytest-cov, typos, ...)


@pytest.mark.slow  # a whole pytest run in a subprocess, ~12 s: out of the fast loop
def test_coverage_is_measured_for_app(tmp_path: Path) -> None:
    """pytest-cov is installed and reports app/'s coverage (the flags scripts/test.sh passes)."""
    this = "tests/test_dev_habits.py::test_the_test_command_reports_coverage"
    pytest_args = ["-q", "-p", "no:cacheprovider", "--db", "sqlite", "--cov=app", "--cov-report=term", this]
    run = _run([sys.executable, "-m", "pytest", *pytest_args], COVERAGE_FILE=str(tmp_path / ".coverage"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"^TOTAL\s+\d+\s+\d+\s+\d+%", run.stdout, re.MULTILINE), run.stdout
