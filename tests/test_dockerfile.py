"""The Dockerfile and .dockerignore, checked without a Docker engine: stages, user, copies,
healthcheck, and agreement with docker-compose.yml."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.compose import (
    API_PORT,
    DOCKERIGNORE,
    ROOT,
    _dockerfile,
    _exec_form,
    _healthcheck_argv,
    _service,
    _stages,
)

# Dockerfile and .dockerignore.


def test_dockerfile_is_multi_stage_from_python_slim() -> None:
    stages = _stages()
    assert len(stages) >= 2
    froms = [args for stage in stages for keyword, args in stage if keyword == "FROM"]
    arg_defaults = dict(args.split("=", 1) for keyword, args in _dockerfile() if keyword == "ARG" and "=" in args)
    final_image = re.sub(r"\$\{(\w+)\}", lambda m: arg_defaults.get(m.group(1), ""), froms[-1].split()[0])
    assert re.fullmatch(r"python:3\.1[1-3]-slim(-\w+)?", final_image), final_image
    assert any(f.startswith("--from=") for k, a in stages[-1] if k == "COPY" for f in a.split()), (
        "the runtime stage takes what the builder built"
    )


def test_dockerfile_runs_as_a_fixed_non_root_user() -> None:
    users = [args for keyword, args in _stages()[-1] if keyword == "USER"]
    assert users, "no USER in the runtime stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit(), "a fixed numeric uid"
    runs = [args.replace("\\", " ").split() for keyword, args in _stages()[-1] if keyword == "RUN"]
    assert any(user in words for words in runs), "the image creates the user with that uid"


def test_dockerfile_copies_the_code_next_to_alembic_and_sample() -> None:
    final = _stages()[-1]
    copies = [args.split() for keyword, args in final if keyword == "COPY" and "--from" not in args]
    destinations: dict[str, str] = {}
    for words in copies:
        *sources, destination = words
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            destinations[source.rstrip("/")] = destination
    assert {"app", "alembic", "alembic.ini", "sample.json"} <= set(destinations), destinations
    # app/migrations.py ROOT is the parent of the app package: everything in one directory.
    base = destinations["app"].rstrip("/").removesuffix("/app")
    assert destinations["alembic"].rstrip("/") == f"{base}/alembic"
    assert destinations["alembic.ini"].rstrip("/") in (base, f"{base}/alembic.ini")
    assert destinations["sample.json"].rstrip("/") in (base, f"{base}/sample.json")


def test_dockerfile_exposes_the_api_with_a_python_healthcheck_and_no_reload() -> None:
    final = dict(_stages()[-1])
    assert str(API_PORT) in final["EXPOSE"].split()
    healthcheck = final["HEALTHCHECK"]
    probe = _exec_form(healthcheck.split("CMD", 1)[1].strip())
    assert Path(probe[0]).name.startswith("python"), "python (no curl in slim images)"
    assert "/readyz" in " ".join(probe)
    cmd = _exec_form(final["CMD"])
    assert "--reload" not in " ".join(cmd)


def test_every_dockerfile_copy_source_exists_and_is_not_ignored() -> None:
    ignored = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip()[:1] not in ("", "#")
    ]
    sources = set()
    for keyword, args in _dockerfile():
        if keyword == "COPY" and "--from" not in args:
            sources.update(args.split()[:-1])
    assert {"pyproject.toml", "README.md", "app/", "alembic/", "alembic.ini", "sample.json"} <= sources
    for source in sources:
        assert (ROOT / source).exists(), source
        name = source.rstrip("/")
        assert name not in ignored, f".dockerignore excludes {source}, which the Dockerfile copies"
    for pattern in (
        ".venv",
        ".git",
        "*.db",
        ".env",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        "bench/results/tmp",
    ):
        assert pattern in ignored, f".dockerignore should exclude {pattern}"
    assert "!.env.example" in ignored or ".env.*" not in ignored


def test_dockerfile_healthcheck_matches_compose() -> None:
    image_check = _exec_form(dict(_stages()[-1])["HEALTHCHECK"].split(" CMD ", 1)[1])
    compose_check = _healthcheck_argv(_service("api")["healthcheck"]["test"])
    assert image_check == compose_check
