"""Shared pieces of the docker-compose / Dockerfile tests: the paths, the expected values and
the parsers of docker-compose.yml, the Dockerfile, command lines and healthchecks."""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import yaml

from app.cli import build_parser
from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
PROMETHEUS_CONFIG = ROOT / "prometheus" / "prometheus.yml"
VENV_BIN = Path(sys.executable).parent
BY_HAND_METRICS_TOKEN = "by-hand-metrics-token-0123456789"
BY_HAND_BEARER = {"Authorization": f"Bearer {BY_HAND_METRICS_TOKEN}"}

SERVICES = ("api", "worker", "dispatcher", "mysql", "redis", "prometheus", "grafana", "cadvisor")
APP_SERVICES = ("api", "worker", "dispatcher")  # built from our Dockerfile
API_PORT, WORKER_METRICS_PORT, CADVISOR_PORT, PROMETHEUS_PORT, GRAFANA_PORT = 8000, 9100, 8080, 9090, 3000
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 (what containers bind; checked, never bound here)

# Variables used by the stack that are not fields of Settings, and who reads them.
COMPOSE_ONLY = {
    "MYSQL_ROOT_PASSWORD": "docker compose → mysql (initialises the server; the service never reads it)",
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
