"""`pixeltrack --help` (and every subcommand's parser) starts without importing the web stack."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.support.serve import PIXELTRACK

pytestmark = pytest.mark.processes  # starts real processes or servers: not in the fast loop

HEAVY = ("fastapi", "sqlalchemy", "uvicorn", "pydantic", "starlette", "cryptography")


def _seconds(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return time.perf_counter() - started


def test_importing_the_cli_imports_no_web_stack() -> None:
    probe = f"import sys, app.cli; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == ""


def test_help_costs_well_under_half_of_importing_the_web_stack() -> None:
    """Best of 5 each, interleaved in the same run (a ratio, not an absolute time: shared machine)."""
    imports: list[float] = []
    helps: list[float] = []
    for _ in range(5):
        imports.append(_seconds([sys.executable, "-c", "import fastapi, sqlalchemy, uvicorn"]))
        helps.append(_seconds([str(PIXELTRACK), "--help"]))
    assert min(helps) < 0.5 * min(imports), (helps, imports)
