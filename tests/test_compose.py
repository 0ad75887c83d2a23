"""docker-compose.yml checked without a Docker engine (the Dockerfile: tests/test_dockerfile.py;
the compose command lines run by hand: tests/test_compose_by_hand.py).

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

import re
import sys
from typing import Any

import pytest
import yaml

from app.cli import build_parser
from app.settings import Settings
from tests.support.compose import (
    ALL_INTERFACES,
    API_PORT,
    APP_SERVICES,
    CADVISOR_PORT,
    COMPOSE_FILE,
    COMPOSE_ONLY,
    EXPECTED_BIND_MOUNTS,
    GRAFANA_PORT,
    PROMETHEUS_CONFIG,
    PROMETHEUS_PORT,
    ROOT,
    SERVICES,
    VENV_BIN,
    WORKER_METRICS_PORT,
    _argv,
    _compose,
    _console_scripts,
    _documented,
    _env_example_values,
    _env_files,
    _environment,
    _exec_form,
    _healthcheck_argv,
    _interpolated,
    _option,
    _service,
    _settings_names,
    _stages,
    _steps,
    _strings,
    _subcommands,
    _substitute,
    _uvicorn_step,
)

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
    assert _steps(commands["worker"])[-1][:2] == ["pixeltrack", "worker"]


def test_api_command_migrates_then_serves_the_asgi_factory_with_several_workers() -> None:
    from uvicorn.importer import import_from_string
    from uvicorn.main import main as uvicorn_cli

    command = _service("api")["command"]
    steps = _steps(command)
    assert steps[0][:2] == ["pixeltrack", "migrate"], "migrations run before serving"
    assert steps[-1][0] == "uvicorn"
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
    shell = _argv(command)
    if len(shell) >= 3 and shell[1] == "-c":  # a shell line: uvicorn must replace the shell
        assert re.search(r"\bexec\s+uvicorn\b", shell[2]), "exec: uvicorn becomes PID 1 and gets SIGTERM"
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
    targets: set[str] = set()
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
