"""The compose stack keeps /metrics private: METRICS_TOKEN is required, handed to the api and
the worker, and to Prometheus as a secret file its scrape configs read (checked without Docker;
tests/test_compose.py runs the commands by hand with the token, tests/test_monitoring.py
scrapes the live app with it)."""

from __future__ import annotations

import pytest
import yaml

from tests.test_compose import (
    APP_SERVICES,
    PROMETHEUS_CONFIG,
    _compose,
    _env_example_values,
    _environment,
    _healthcheck_argv,
    _interpolated,
    _service,
    _substitute,
)
from tests.test_compose import COMPOSE_FILE as COMPOSE

pytestmark = pytest.mark.processes  # starts real processes or servers: not in the fast loop

SECRET = "metrics_token"


def test_api_and_worker_require_metrics_token_from_env() -> None:
    for name in APP_SERVICES:
        value = _environment(_service(name))["METRICS_TOKEN"]
        assert _interpolated(value) == {"METRICS_TOKEN"}, name
        assert value.startswith("${METRICS_TOKEN:?"), f"{name}: compose refuses to start without it"


def test_compose_refuses_an_env_without_metrics_token() -> None:
    env = {k: v for k, v in _env_example_values().items() if k != "METRICS_TOKEN"}
    with pytest.raises(AssertionError, match="compose would refuse: set METRICS_TOKEN"):
        _substitute(COMPOSE.read_text(encoding="utf-8"), env)


def test_prometheus_reads_the_token_from_a_compose_secret() -> None:
    compose = _compose()
    assert compose["secrets"][SECRET] == {"environment": "METRICS_TOKEN"}
    assert SECRET in compose["services"]["prometheus"]["secrets"]
    for name, service in compose["services"].items():
        if name != "prometheus":
            assert SECRET not in (service.get("secrets") or []), f"{name} does not need the secret file"
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for job in ("api", "worker"):
        # Compose mounts a service's secret at /run/secrets/<name>.
        assert jobs[job]["authorization"] == {"type": "Bearer", "credentials_file": f"/run/secrets/{SECRET}"}


def test_worker_healthcheck_sends_the_token() -> None:
    probe = " ".join(_healthcheck_argv(_service("worker")["healthcheck"]["test"]))
    assert "'Authorization': 'Bearer ' + os.environ.get('METRICS_TOKEN', '')" in probe
