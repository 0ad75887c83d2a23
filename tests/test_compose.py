"""docker-compose.yml, the Dockerfile and .dockerignore, checked without a Docker engine.

The static tests parse the files and hold them to the code: every variable the stack
uses is a setting (app.settings.Settings) or a known compose-only variable, and is
documented in .env.example; every bind-mounted host path exists in the repository; every
command of our image names a real console script with a real subcommand / importable
uvicorn target; ports agree between compose, uvicorn, the healthchecks, the Dockerfile
and prometheus/prometheus.yml.

The "by hand" tests run the api's (and the worker's) compose command line as a person
would without Docker: same command, the compose environment with only what Docker
provides substituted (a SQLite file instead of MySQL, no Redis for the api, a free port,
development secrets), then poll until ready with a deadline and always stop the process.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, inspect

from app.cli import build_parser
from app.settings import Settings
from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
PROMETHEUS_CONFIG = ROOT / "prometheus" / "prometheus.yml"
VENV_BIN = Path(sys.executable).parent
BY_HAND_METRICS_TOKEN = "by-hand-metrics-token-0123456789"
BY_HAND_BEARER = {"Authorization": f"Bearer {BY_HAND_METRICS_TOKEN}"}

SERVICES = ("api", "worker", "mysql", "redis", "prometheus", "grafana", "cadvisor")
APP_SERVICES = ("api", "worker")  # built from our Dockerfile
API_PORT, WORKER_METRICS_PORT, CADVISOR_PORT, PROMETHEUS_PORT, GRAFANA_PORT = 8000, 9100, 8080, 9090, 3000
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 (what containers bind; checked, never bound here)

# Variables used by the stack that are not fields of Settings, and who reads them.
COMPOSE_ONLY = {
    "GRAFANA_ADMIN_USER": "docker compose → grafana GF_SECURITY_ADMIN_USER",
    "GRAFANA_ADMIN_PASSWORD": "docker compose → grafana GF_SECURITY_ADMIN_PASSWORD",
    "PROMETHEUS_MULTIPROC_DIR": "prometheus_client (multiprocess metrics of the uvicorn workers)",
}

# Host paths mounted into the monitoring containers (written by the monitoring work).
EXPECTED_BIND_MOUNTS = {
    "prometheus": {
        "./prometheus/prometheus.yml": "/etc/prometheus/prometheus.yml",
        "./prometheus/rules.yml": "/etc/prometheus/rules.yml",
    },
    "grafana": {
        "./grafana/provisioning": "/etc/grafana/provisioning",
        "./grafana/dashboards": "/var/lib/grafana/dashboards",
    },
}


# Parsing helpers.


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return data


def _service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = _compose()["services"][name]
    return service


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """`environment:` as a mapping, from either the list or the mapping form."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _env_files(service: dict[str, Any]) -> list[str]:
    files = service.get("env_file") or []
    files = [files] if isinstance(files, str | dict) else files
    return [f["path"] if isinstance(f, dict) else f for f in files]


def _strings(node: Any) -> Iterator[str]:
    """Every key and scalar value of parsed YAML (what compose interpolates; comments are not)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif node is not None:
        yield str(node)


def _interpolated(text: str) -> set[str]:
    """Names of `${VAR}`, `${VAR:-default}`, `${VAR:?error}` and `$VAR` (compose interpolation; `$$` escapes)."""
    text = text.replace("$$", "")
    braced = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:]?[-?+][^}]*)?\}", text))
    bare = set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", text))
    return braced | bare


def _substitute(text: str, env: dict[str, str]) -> str:
    """Compose interpolation (the forms used here) with `env` as the .env file."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        value = env.get(name)
        if op in (":-", "-") and not value:
            return arg
        if op in (":?", "?") and not value:
            raise AssertionError(f"compose would refuse: {arg}")
        return value or ""

    text = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}", one, text)
    return text.replace("$$", "$")


def _documented() -> set[str]:
    """Variables .env.example documents: `VAR=value` lines, or commented `# VAR=value` ones."""
    names = set()
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if match := re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line):
            names.add(match.group(1))
    return names


def _env_example_values() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if match := re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line):
            values[match.group(1)] = match.group(2)
    return values


def _settings_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add((field.alias or name).upper())
    return names


def _argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _steps(command: str | list[str]) -> list[list[str]]:
    """The programs a command runs: `sh -c "a && exec b"` → [[a...], [b...]]; else [argv]."""
    argv = _argv(command)
    if len(argv) >= 3 and Path(argv[0]).name in ("sh", "bash") and argv[1] == "-c":
        steps = []
        for part in re.split(r"\s*(?:&&|;)\s*", argv[2]):
            words = shlex.split(part)
            if words and words[0] == "exec":
                words = words[1:]
            if words:
                steps.append(words)
        return steps
    return [argv]


def _option(argv: list[str], name: str) -> str | None:
    for i, word in enumerate(argv):
        if word == name and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def _uvicorn_step(command: str | list[str]) -> list[str]:
    [step] = [s for s in _steps(command) if s[0] == "uvicorn"]
    return step


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    return instructions


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in _dockerfile():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, args))
    return stages


def _exec_form(args: str) -> list[str]:
    if args.startswith("["):
        parsed: list[str] = yaml.safe_load(args)  # a JSON array is YAML too
        return parsed
    return ["/bin/sh", "-c", args]


def _healthcheck_argv(test: list[str] | str) -> list[str]:
    argv = _argv(test)
    if argv[0] == "CMD":
        return argv[1:]
    if argv[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(argv[1:])]
    return ["/bin/sh", "-c", " ".join(argv)]


def _console_scripts() -> set[str]:
    return {ep.name for ep in entry_points(group="console_scripts")}


def _subcommands() -> set[str]:
    parser = build_parser()
    return {
        name
        for action in parser._actions
        if isinstance(action.choices, dict) and "serve" in action.choices
        for name in action.choices
    }


# The services and their wiring.


def test_every_service_of_the_stack_exists() -> None:
    compose = _compose()
    assert set(SERVICES) <= set(compose["services"]), sorted(set(SERVICES) - set(compose["services"]))
    assert "version" not in compose, "the Compose spec has no version key (obsolete, warns)"


def test_app_services_are_built_from_the_dockerfile_with_the_env_file() -> None:
    for name in APP_SERVICES:
        service = _service(name)
        build = service["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        assert (ROOT / context).resolve() == ROOT, name
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (ROOT / context / dockerfile).is_file(), name
        assert _env_files(service) == [".env"], name
        env = _environment(service)
        assert env["MYSQL_HOST"] == "mysql", name
        assert env["REDIS_HOST"] == "redis", name
        # URLs from .env (meant for running by hand) must not override the stack's services.
        assert env.get("DATABASE_URL", "") == "", name
        assert env.get("REDIS_URL", "") == "", name


def test_api_exports_a_writable_multiprocess_metrics_dir() -> None:
    api = _service("api")
    directory = _environment(api)["PROMETHEUS_MULTIPROC_DIR"]
    assert directory == "/tmp/prometheus-multiproc"
    tmpfs = api.get("tmpfs") or []
    tmpfs = [tmpfs] if isinstance(tmpfs, str) else tmpfs
    volumes = [v if isinstance(v, str) else v.get("target", "") for v in api.get("volumes", [])]
    mounted = {entry.split(":")[0] for entry in tmpfs} | {v.split(":")[-1] for v in volumes}
    assert directory in mounted, "a tmpfs (or volume): writable by the app user, empty at each start"


@pytest.mark.processes
def test_worker_serves_its_metrics_for_prometheus() -> None:
    worker = _service("worker")
    env = _environment(worker)
    assert int(env["WORKER_METRICS_PORT"]) == WORKER_METRICS_PORT
    assert env.get("WORKER_METRICS_HOST") == ALL_INTERFACES, "bound to all interfaces so prometheus can reach it"
    assert str(WORKER_METRICS_PORT) in [str(p) for p in worker.get("expose", [])]
    assert "ports" not in worker, "no published host port: replicas (--scale worker=N) would collide"
    assert worker["depends_on"]["api"]["condition"] == "service_healthy", "the api migrates first"


def test_depends_on_waits_for_healthy_dependencies() -> None:
    api = _service("api")
    for dependency in ("mysql", "redis"):
        assert api["depends_on"][dependency]["condition"] == "service_healthy"
    grafana_depends = _service("grafana")["depends_on"]
    assert "prometheus" in grafana_depends


def test_healthchecks_exist_and_probe_the_right_thing() -> None:
    services = _compose()["services"]
    for name in ("api", "worker", "mysql", "redis"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    api_probe = " ".join(_healthcheck_argv(services["api"]["healthcheck"]["test"]))
    assert f"http://127.0.0.1:{API_PORT}/readyz" in api_probe
    worker_probe = " ".join(_healthcheck_argv(services["worker"]["healthcheck"]["test"]))
    assert f"http://127.0.0.1:{WORKER_METRICS_PORT}/metrics" in worker_probe
    mysql_probe = " ".join(_healthcheck_argv(services["mysql"]["healthcheck"]["test"]))
    assert "mysqladmin ping" in mysql_probe
    redis_probe = " ".join(_healthcheck_argv(services["redis"]["healthcheck"]["test"]))
    assert "redis-cli" in redis_probe
    assert " -a " in redis_probe
    assert "ping" in redis_probe


def test_mysql_service() -> None:
    mysql = _service("mysql")
    image, _, tag = mysql["image"].partition(":")
    assert image == "mysql"
    assert tag.startswith("8."), tag
    command = _argv(mysql["command"])
    assert "--character-set-server=utf8mb4" in command
    assert "--collation-server=utf8mb4_bin" in command, "the collation the schema and tests assume"
    env = mysql["environment"]
    for name in ("MYSQL_DATABASE", "MYSQL_USER", "MYSQL_PASSWORD", "MYSQL_ROOT_PASSWORD"):
        assert _interpolated(str(env[name])) == {name}, f"{name} comes from .env"
    assert any(str(v).endswith(":/var/lib/mysql") and not str(v).startswith((".", "/")) for v in mysql["volumes"])


def test_redis_service() -> None:
    redis = _service("redis")
    assert redis["image"] == "redis:7-alpine"
    command = _argv(redis["command"])
    assert _interpolated(command[command.index("--requirepass") + 1]) == {"REDIS_PASSWORD"}
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(str(v).endswith(":/data") and not str(v).startswith((".", "/")) for v in redis["volumes"])


def test_monitoring_services() -> None:
    services = _compose()["services"]
    assert services["prometheus"]["image"].startswith("prom/prometheus")
    assert f"{PROMETHEUS_PORT}:{PROMETHEUS_PORT}" in services["prometheus"]["ports"]
    grafana = services["grafana"]
    assert grafana["image"].startswith("grafana/grafana")
    assert f"{GRAFANA_PORT}:{GRAFANA_PORT}" in grafana["ports"]
    env = _environment(grafana)
    assert _interpolated(env["GF_SECURITY_ADMIN_PASSWORD"]) == {"GRAFANA_ADMIN_PASSWORD"}
    assert _interpolated(env["GF_SECURITY_ADMIN_USER"]) == {"GRAFANA_ADMIN_USER"}
    for name in ("MYSQL_USER", "MYSQL_PASSWORD", "MYSQL_DATABASE"):
        assert _interpolated(env[name]) == {name}, "the MySQL datasource's credentials"
    cadvisor = services["cadvisor"]
    image, _, tag = cadvisor["image"].partition(":")
    assert image == "gcr.io/cadvisor/cadvisor"
    assert tag, "pinned tag"
    assert tag != "latest", "pinned tag"
    assert str(CADVISOR_PORT) in [str(p) for p in cadvisor.get("expose", [])]
    assert "ports" not in cadvisor, "internal only"
    mounts = set(cadvisor["volumes"])
    for mount in ("/:/rootfs:ro", "/var/run:/var/run:ro", "/sys:/sys:ro", "/var/lib/docker/:/var/lib/docker:ro"):
        assert mount in mounts


# Variables: settings or known compose-only, always documented.


def test_interpolated_variables_are_settings_or_compose_only_and_documented() -> None:
    used = set().union(*(_interpolated(text) for text in _strings(_compose())))
    assert used, "no ${VAR} found: the parser is wrong"
    known = _settings_names() | set(COMPOSE_ONLY)
    assert used <= known, f"unknown variables: {sorted(used - known)}"
    assert used <= _documented(), f"not documented in .env.example: {sorted(used - _documented())}"


def test_app_services_environment_is_settings_or_compose_only_and_documented() -> None:
    known = _settings_names() | set(COMPOSE_ONLY)
    documented = _documented()
    for name in APP_SERVICES:
        names = set(_environment(_service(name)))
        assert names <= known, f"{name}: unknown variables {sorted(names - known)}"
        assert names <= documented, f"{name}: not documented in .env.example: {sorted(names - documented)}"


def test_env_file_variables_are_settings_or_compose_only() -> None:
    # The api and worker get the whole .env (a copy of .env.example) through env_file.
    assigned = set(_env_example_values())
    known = _settings_names() | set(COMPOSE_ONLY)
    assert assigned <= known, f".env.example assigns unknown variables: {sorted(assigned - known)}"


def test_every_setting_is_documented_in_env_example() -> None:
    missing = _settings_names() - _documented()
    assert not missing, f"settings not documented in .env.example: {sorted(missing)}"


def test_compose_only_variables_are_used_and_not_settings() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for name in COMPOSE_ONLY:
        assert name in text, f"{name} is not used by docker-compose.yml any more: drop it from COMPOSE_ONLY"
        assert name not in _settings_names(), f"{name} became a setting: drop it from COMPOSE_ONLY"


def test_compose_file_interpolates_with_env_example() -> None:
    # What `cp .env.example .env && docker compose config` does: every required variable set.
    rendered = yaml.safe_load(_substitute(COMPOSE_FILE.read_text(encoding="utf-8"), _env_example_values()))
    assert _environment(rendered["services"]["grafana"])["GF_SECURITY_ADMIN_PASSWORD"]
    redis_command = _argv(rendered["services"]["redis"]["command"])
    assert redis_command[redis_command.index("--requirepass") + 1] == _env_example_values()["REDIS_PASSWORD"]


# Mounts.


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of bind mounts; named volumes are left out."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"]))
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/", "~")):
            mounts.append((source, target))
    return mounts


def test_every_repository_bind_mount_exists() -> None:
    services = _compose()["services"]
    checked = 0
    for name, service in services.items():
        for source, _target in _bind_mounts(service):
            if source.startswith("/"):
                continue  # a host path (cadvisor), not a file of this repository
            path = (ROOT / source).resolve()
            assert path.is_relative_to(ROOT), f"{name}: {source} points outside the repository"
            assert path.exists(), f"{name}: {source} does not exist in the repository"
            checked += 1
    assert checked >= 4


def test_named_volumes_are_declared() -> None:
    compose = _compose()
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.get("source", "") if isinstance(volume, dict) else volume.split(":")[0]
            if source and not source.startswith((".", "/", "~")):
                assert source in declared, f"{name}: volume {source} is not declared"


def test_monitoring_files_are_mounted_where_the_containers_read_them() -> None:
    for name, expected in EXPECTED_BIND_MOUNTS.items():
        mounts = {source.rstrip("/"): target.rstrip("/") for source, target in _bind_mounts(_service(name))}
        for source, target in expected.items():
            assert mounts.get(source) == target, f"{name}: {source} should be mounted at {target}"
        ro = [v for v in _service(name)["volumes"] if isinstance(v, str) and v.startswith("./")]
        assert all(v.endswith(":ro") for v in ro), f"{name}: configuration mounts are read-only"
    assert (ROOT / "grafana/provisioning/datasources/datasources.yml").is_file()
    assert (ROOT / "grafana/provisioning/dashboards/dashboards.yml").is_file()
    assert list((ROOT / "grafana/dashboards").glob("*.json")), "no dashboard"


# Commands of our image.


def test_app_commands_are_real_console_scripts_and_subcommands() -> None:
    scripts = _console_scripts()
    subcommands = _subcommands()
    commands = {name: _service(name)["command"] for name in APP_SERVICES}
    commands["Dockerfile CMD"] = _exec_form(dict(_stages()[-1])["CMD"])
    for name, command in commands.items():
        for step in _steps(command):
            program = step[0]
            assert program in scripts, f"{name}: {program} is not a console script of this environment"
            assert (VENV_BIN / program).exists(), f"{name}: {program} is not installed next to {sys.executable}"
            if program == "pixeltrack":
                assert step[1] in subcommands, f"{name}: pixeltrack has no {step[1]!r} subcommand"
                build_parser().parse_args(step[1:])  # exits (fails the test) on unknown options
    assert _steps(commands["worker"]) == [["pixeltrack", "worker"]]


def test_api_command_migrates_then_serves_the_asgi_factory_with_several_workers() -> None:
    from uvicorn.importer import import_from_string
    from uvicorn.main import main as uvicorn_cli

    command = _service("api")["command"]
    steps = _steps(command)
    assert steps[0] == ["pixeltrack", "migrate"], "migrations run before serving"
    assert [s[0] for s in steps] == ["pixeltrack", "uvicorn"]
    uvicorn = _uvicorn_step(command)
    context = uvicorn_cli.make_context("uvicorn", uvicorn[1:])  # uvicorn's own option parser
    params = context.params
    assert params["app"] == "app.main:create_asgi"
    assert params["factory"] is True
    assert callable(import_from_string(params["app"]))
    assert params["reload"] is False
    assert params["workers"] is not None
    assert params["workers"] > 1
    assert params["host"] == ALL_INTERFACES
    assert params["port"] == API_PORT
    assert _argv(command)[:2] == ["sh", "-c"]
    assert " && exec uvicorn " in _argv(command)[2], "exec: uvicorn becomes PID 1 and gets SIGTERM"
    assert _exec_form(dict(_stages()[-1])["CMD"]) == _argv(command), "the image runs the same line"


def test_ports_are_consistent() -> None:
    services = _compose()["services"]
    uvicorn_port = int(_option(_uvicorn_step(services["api"]["command"]), "--port") or 0)
    assert uvicorn_port == API_PORT
    assert f"{API_PORT}:{uvicorn_port}" in services["api"]["ports"]
    assert f":{uvicorn_port}/readyz" in " ".join(_healthcheck_argv(services["api"]["healthcheck"]["test"]))
    final = _stages()[-1]
    assert any(k == "EXPOSE" and str(uvicorn_port) in args.split() for k, args in final)
    assert f":{uvicorn_port}/readyz" in dict(final)["HEALTHCHECK"]
    worker_port = int(_environment(services["worker"])["WORKER_METRICS_PORT"])
    assert f":{worker_port}/metrics" in " ".join(_healthcheck_argv(services["worker"]["healthcheck"]["test"]))
    assert "worker_metrics_port" in Settings.model_fields, "WORKER_METRICS_PORT must be a setting the worker reads"


def _scrape_targets(config: dict[str, Any]) -> set[str]:
    targets = set()
    for job in config.get("scrape_configs") or []:
        for static in job.get("static_configs") or []:
            targets.update(static.get("targets") or [])
        for dns in job.get("dns_sd_configs") or []:
            targets.update(f"{name}:{dns.get('port')}" for name in dns.get("names") or [])
    return targets


def test_prometheus_scrapes_the_api_the_worker_and_cadvisor() -> None:
    if not PROMETHEUS_CONFIG.exists():
        pytest.skip("prometheus/prometheus.yml is not written yet")
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    targets = _scrape_targets(config)
    for target in (f"api:{API_PORT}", f"worker:{WORKER_METRICS_PORT}", f"cadvisor:{CADVISOR_PORT}"):
        assert target in targets, f"prometheus.yml does not scrape {target}: {sorted(targets)}"
    # Rule files resolve (relative to the config file) to a file mounted into the container.
    mounted = {target for _source, target in _bind_mounts(_service("prometheus"))}
    for rule_file in config.get("rule_files") or []:
        path = rule_file if rule_file.startswith("/") else f"/etc/prometheus/{rule_file}"
        assert path in mounted, f"rule file {rule_file} is not mounted into the prometheus container"


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
    assert f"--uid {user}" in DOCKERFILE.read_text(encoding="utf-8")


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
    assert "CMD" in healthcheck
    assert '"python", "-c"' in healthcheck, "python -c (no curl in slim images)"
    assert "/readyz" in healthcheck
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


# Runnable by hand: the compose command lines, without Docker.


def _clean_environ() -> dict[str, str]:
    """This environment without PixelTracking/compose configuration, the venv's scripts first on PATH."""
    drop = _settings_names() | set(COMPOSE_ONLY)
    env = {k: v for k, v in os.environ.items() if k.upper() not in drop}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _by_hand_env(service: str, substitutions: dict[str, str]) -> dict[str, str]:
    """The service's compose environment, with what only Docker provides substituted or removed."""
    env = _clean_environ()
    env.update(_environment(_service(service)))
    env.update({"APP_ENV": "development"})
    for name, value in substitutions.items():
        if value == "":
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _by_hand_argv(command: str | list[str], replace: dict[str, str]) -> list[str]:
    """The compose command with option values replaced (e.g. --port), otherwise unchanged."""

    def patch(words: list[str]) -> list[str]:
        out = list(words)
        for i, word in enumerate(out[:-1]):
            if word in replace:
                out[i + 1] = replace[word]
        return out

    argv = _argv(command)
    if len(argv) >= 3 and argv[:2] == ["sh", "-c"]:
        parts = re.split(r"(\s*(?:&&|;)\s*)", argv[2])
        script = "".join(p if i % 2 else shlex.join(patch(shlex.split(p))) for i, p in enumerate(parts))
        return [*argv[:2], script]
    return patch(argv)


@contextlib.contextmanager
def _running(argv: list[str], env: dict[str, str], cwd: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Start argv in its own process group (uvicorn forks workers); always stop that group."""
    log = cwd / "output.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        try:
            yield proc, log
        finally:
            children = _children(proc.pid)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # the supervisor and its workers
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
            for pid in children:  # workers left behind, only if still in the group we started
                with contextlib.suppress(ProcessLookupError):
                    if os.getpgid(pid) == proc.pid:
                        os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    """Child processes of pid (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _wait_for_200(
    url: str, proc: subprocess.Popen[str], log: Path, deadline_s: float = 90.0, headers: dict[str, str] | None = None
) -> httpx.Response:
    deadline = time.monotonic() + deadline_s
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"exited with {proc.returncode} before {url} answered 200:\n{log.read_text()}")
        try:
            response = httpx.get(url, headers=headers, timeout=2.0)
            if response.status_code == 200:
                return response
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.TransportError as exc:
            last = exc.__class__.__name__
        time.sleep(0.1)  # poll interval, bounded by the deadline
    pytest.fail(f"{url} not 200 within {deadline_s}s (last: {last}):\n{log.read_text()}")


@pytest.mark.processes
@pytest.mark.sqlite_only
def test_api_compose_command_runs_by_hand(tmp_path: Path) -> None:
    port = free_port()
    db_file = tmp_path / "by-hand.db"
    metrics_dir = tmp_path / "prometheus-multiproc"  # what the tmpfs provides: an empty directory
    metrics_dir.mkdir()
    api = _service("api")
    env = _by_hand_env(
        "api",
        {
            "DATABASE_URL": f"sqlite:///{db_file}",  # instead of the mysql service
            "MYSQL_HOST": "",
            "REDIS_HOST": "",  # no Redis: in-process cache and queue
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "API_SECRET_KEY": "by-hand-secret-" + "k" * 40,
            "FERNET_KEY": Fernet.generate_key().decode(),
            "METRICS_TOKEN": BY_HAND_METRICS_TOKEN,  # what compose interpolates from .env
        },
    )
    argv = _by_hand_argv(api["command"], {"--port": str(port), "--host": "127.0.0.1"})
    assert argv != _argv(api["command"])
    with _running(argv, env, tmp_path) as (proc, log):
        ready = _wait_for_200(f"http://127.0.0.1:{port}/readyz", proc, log)
        assert ready.json()["checks"] == {"database": "ok", "schema": "ok"}
        # Migrations ran before serving.
        engine = create_engine(f"sqlite:///{db_file}")
        try:
            tables = set(inspect(engine).get_table_names())
        finally:
            engine.dispose()
        assert {"alembic_version", "users", "campaigns", "pixels", "openings"} <= tables
        # Several uvicorn workers: the supervisor has worker children.
        children = _children(proc.pid)
        assert len(children) >= 2, f"expected several uvicorn workers, found {children}"
        docs = httpx.get(f"http://127.0.0.1:{port}/docs", timeout=5.0)
        assert docs.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0).status_code == 401
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", headers=BY_HAND_BEARER, timeout=5.0)
        assert metrics.status_code == 200, metrics.text[:300]
        # The container healthcheck itself, pointed at this port, passes.
        probe = [
            part.replace(f"127.0.0.1:{API_PORT}", f"127.0.0.1:{port}")
            for part in _healthcheck_argv(api["healthcheck"]["test"])
        ]
        result = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, result.stderr
    assert proc.returncode is not None
    assert "--reload" not in " ".join(argv)


@pytest.mark.processes
@pytest.mark.sqlite_only
def test_worker_compose_command_runs_by_hand(tmp_path: Path, redis_client: Any, redis_url: str) -> None:
    port = free_port()
    worker = _service("worker")
    env = _by_hand_env(
        "worker",
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'worker.db'}",
            "MYSQL_HOST": "",
            "REDIS_HOST": "",
            "REDIS_URL": redis_url,  # the test Redis instead of the redis service
            "WORKER_METRICS_PORT": str(port),
            "WORKER_METRICS_HOST": "127.0.0.1",
            "API_SECRET_KEY": "by-hand-secret-" + "k" * 40,
            "FERNET_KEY": Fernet.generate_key().decode(),
            "METRICS_TOKEN": BY_HAND_METRICS_TOKEN,
        },
    )
    argv = _argv(worker["command"])
    assert argv[0] in _console_scripts()
    with _running(argv, env, tmp_path) as (proc, log):
        metrics = _wait_for_200(f"http://127.0.0.1:{port}/metrics", proc, log, headers=BY_HAND_BEARER)
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0).status_code == 401
        assert "pixeltrack_" in metrics.text
        probe = [
            part.replace(f"127.0.0.1:{WORKER_METRICS_PORT}", f"127.0.0.1:{port}")
            for part in _healthcheck_argv(worker["healthcheck"]["test"])
        ]
        result = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, result.stderr
