"""A real package (issue #11 item 7): the sdist and wheel that `python -m build` makes install into a
fresh venv and run from any directory; the migrations and sample.json ride inside as package data."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tarfile
import zipfile
from importlib.resources import files
from pathlib import Path

import httpx
import pytest

from app import cli
from app.migrations import script_location
from tests.support.processes import free_port, stop_process, wait_until

REPO = Path(__file__).resolve().parent.parent
MIGRATIONS = sorted(p.name for p in (REPO / "alembic" / "versions").glob("*.py"))
ADMIN, PASSWORD = "packaged-admin", "packaged-admin-password-1"
# Configuration of this test run that must not reach the installed program.
_OURS: tuple[str, ...] = (
    "MYSQL_",
    "REDIS_",
    "API_",
    "FERNET",
    "FIRST_ADMIN",
    "DATABASE_URL",
    "APP_ENV",
    "SECRETS_FILE",
    "SQLITE_PATH",
)
_OURS += ("PUBLIC_BASE_URL", "DEDUPE_", "WORKER_", "ANONYMIZE_", "PROMETHEUS_MULTIPROC_DIR", "PYTHON", "VIRTUAL_ENV")


def _run(args: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout


def test_resources_are_found_through_the_package() -> None:
    """The editable install reads the repository's files through the same importlib.resources paths."""
    assert (script_location() / "env.py").read_bytes() == (REPO / "alembic" / "env.py").read_bytes()
    assert sorted(p.name for p in (script_location() / "versions").glob("*.py")) == MIGRATIONS
    bundled = files("app").joinpath("data", "sample.json")
    assert bundled.read_bytes() == (REPO / "sample.json").read_bytes()
    assert cli.DEFAULT_SAMPLE.read_bytes() == (REPO / "sample.json").read_bytes()


def _parent_parent_lookups(path: Path) -> list[int]:
    """Lines deriving a path from the package's own location (`__file__`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id == "__file__"]


def test_app_never_locates_files_from_its_own_path() -> None:
    offenders = {
        str(path.relative_to(REPO)): lines
        for path in sorted((REPO / "app").rglob("*.py"))
        if (lines := _parent_parent_lookups(path))
    }
    assert offenders == {}


def test_python_dash_m_app_is_the_command_line() -> None:
    out = _run([sys.executable, "-m", "app", "--help"], cwd=REPO)
    assert "serve" in out
    assert "migrate" in out


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(REPO)], cwd=REPO)
    return out


@pytest.mark.slow
@pytest.mark.sqlite_only  # no database of the leg is involved: build once
def test_sdist_carries_the_top_level_migrations_and_sample(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert {"alembic/env.py", "alembic/script.py.mako", "alembic.ini", "sample.json", "pyproject.toml"} <= names
    assert {f"alembic/versions/{name}" for name in MIGRATIONS} <= names
    assert not any("__pycache__" in name for name in names)


@pytest.mark.slow
@pytest.mark.sqlite_only
def test_wheel_carries_the_migrations_and_sample_as_package_data(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        sample = zf.read("app/data/sample.json")
    assert {"app/__main__.py", "app/data/alembic/env.py", "app/data/alembic/script.py.mako"} <= names
    assert {f"app/data/alembic/versions/{name}" for name in MIGRATIONS} <= names
    assert sample == (REPO / "sample.json").read_bytes()


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel (and its dependencies) installed: its bin/ directory."""
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", str(venv)], cwd=venv)
    (wheel,) = dist.glob("*.whl")
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], cwd=venv, timeout=900)
    return venv / "bin"


@pytest.fixture
def workdir(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An empty directory far from the repository, and an environment pointing at a SQLite file in it."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(_OURS)}
    env |= {"DATABASE_URL": f"sqlite:///{tmp_path / 'packaged.db'}"}
    return tmp_path, env


@pytest.mark.slow
@pytest.mark.sqlite_only
@pytest.mark.timeout(1200)
def test_installed_wheel_migrates_and_serves_from_any_directory(
    installed: Path, workdir: tuple[Path, dict[str, str]]
) -> None:
    cwd, env = workdir
    located = _run([str(installed / "python"), "-c", "import app; print(app.__file__)"], cwd=cwd, env=env)
    assert not Path(located.strip()).is_relative_to(REPO), "the fresh venv must use the installed wheel"
    assert "serve" in _run([str(installed / "python"), "-m", "app", "--help"], cwd=cwd, env=env)

    assert "database migrated" in _run([str(installed / "pixeltrack"), "migrate"], cwd=cwd, env=env)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env |= {"FIRST_ADMIN_USERNAME": ADMIN, "FIRST_ADMIN_PASSWORD": PASSWORD}
    with (cwd / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(installed / "pixeltrack"), "serve", "--no-sample", "--host", "127.0.0.1", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:

            def ready() -> bool:
                try:
                    return httpx.get(f"{base}/readyz", timeout=1.0).status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(lambda: proc.poll() is not None or ready(), "the installed pixeltrack serve", timeout=120)
            assert proc.poll() is None, (cwd / "serve.log").read_text(errors="replace")
            assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200

            token = httpx.post(f"{base}/auth/token", data={"username": ADMIN, "password": PASSWORD}, timeout=10)
            assert token.status_code == 200, token.text
            auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
            created = httpx.post(f"{base}/api/v1/campaigns", json={"name": "Packaged"}, headers=auth, timeout=10)
            assert created.status_code == 201, created.text
            listed = httpx.get(f"{base}/api/v1/campaigns", headers=auth, timeout=10)
            assert listed.status_code == 200, listed.text
            assert [c["name"] for c in listed.json()["items"]] == ["Packaged"]  # --no-sample: nothing else
        finally:
            stop_process(proc)
