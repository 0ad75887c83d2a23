"""Prometheus config, alert rules and Grafana dashboards, proven against real servers.

- promtool checks prometheus/prometheus.yml and prometheus/rules.yml;
- the dashboards are checked structurally (uids, panel ids, datasource uids provisioned,
  variables defined);
- a real Prometheus (Debian package) is started on loopback with our scrape config
  pointed at the live app, a real `pixeltrack worker` process and a stand-in for cAdvisor
  (cAdvisor needs a Docker host; the stand-in serves its metric names and labels), real
  traffic is sent, and every PromQL expression of every dashboard must return data and
  every alert rule must evaluate without error;
- every SQL panel query (and the campaign variable) runs against MariaDB with Grafana's
  macros expanded and must return rows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from app.main import create_asgi
from app.models import User
from app.settings import Settings
from app.tracking.tokens import TokenCodec
from tests import factories
from tests.live import live_server
from tests.support.processes import free_port
from tests.support.reports import make_arm

pytestmark = pytest.mark.processes  # starts real processes or servers: not in the fast loop

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
VENV_BIN = Path(sys.executable).parent
RATE_INTERVAL = "1m"
METRICS_TOKEN_SECRET = "/run/secrets/metrics_token"
METRICS_TOKEN = "monitoring-test-metrics-token-0123456789"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed (apt-get install -y prometheus)", pytrace=False)
        pytest.skip(f"{name} is not installed (apt-get install -y prometheus)")
    return path


def _targets() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                yield path.name, panel, target


def _promql() -> list[tuple[str, str]]:
    return [(f"{name}: {panel['title']} [{t['refId']}]", t["expr"]) for name, panel, t in _targets() if "expr" in t]


def _sql() -> list[tuple[str, str]]:
    queries = [
        (f"{name}: {panel['title']} [{t['refId']}]", t["rawSql"]) for name, panel, t in _targets() if "rawSql" in t
    ]
    for path in DASHBOARDS:
        for var in json.loads(path.read_text()).get("templating", {}).get("list", []):
            if var.get("datasource", {}).get("type") == "mysql":
                queries.append((f"{path.name}: variable ${var['name']}", var["query"]))
    return queries


# --- static checks -----------------------------------------------------------------------


def _with_token_file(config: dict[str, Any], token_file: Path) -> dict[str, Any]:
    """The config with the scrape token read from `token_file` instead of the compose secret."""
    for job in config["scrape_configs"]:
        if "authorization" in job:
            assert job["authorization"]["credentials_file"] == METRICS_TOKEN_SECRET
            job["authorization"]["credentials_file"] = str(token_file)
    return config


def test_promtool_accepts_config_and_rules(tmp_path: Path) -> None:
    promtool = _tool("promtool")
    # promtool also checks that the token file exists: the compose secret, here a local file.
    (tmp_path / "metrics_token").write_text("a-token")
    config = _with_token_file(
        yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text()), tmp_path / "metrics_token"
    )
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(ROOT / "prometheus" / "rules.yml", tmp_path / "rules.yml")
    config_check = subprocess.run(
        [promtool, "check", "config", "prometheus.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert config_check.returncode == 0, config_check.stdout + config_check.stderr
    rules = subprocess.run(
        [promtool, "check", "rules", "rules.yml"], cwd=ROOT / "prometheus", capture_output=True, text=True
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 7 rules found" in rules.stdout


def test_prometheus_scrapes_api_worker_dispatcher_and_cadvisor() -> None:
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"api", "worker", "dispatcher", "cadvisor"}
    assert jobs["api"]["dns_sd_configs"][0] == {"names": ["api"], "type": "A", "port": 8000}
    assert jobs["worker"]["dns_sd_configs"][0] == {"names": ["worker"], "type": "A", "port": 9100}
    assert jobs["dispatcher"]["dns_sd_configs"][0] == {"names": ["dispatcher"], "type": "A", "port": 9100}
    assert jobs["cadvisor"]["static_configs"][0]["targets"] == ["cadvisor:8080"]
    assert config["rule_files"] == ["rules.yml"]
    # The api's and the worker's /metrics require METRICS_TOKEN (the compose secret file).
    for name in ("api", "worker", "dispatcher"):
        assert jobs[name]["authorization"] == {"type": "Bearer", "credentials_file": METRICS_TOKEN_SECRET}
    assert "authorization" not in jobs["cadvisor"]


def test_no_dashboard_query_reads_a_tenant_label() -> None:
    """Per-campaign and per-group panels read MySQL: no PromQL names a tenant label or variable."""
    for name, expr in _promql():
        assert not re.search(r"campaign|group_id|contact|webhook|user|owner", expr), (name, expr)
        assert "$campaign" not in expr, name
    sql_titles = {name for name, _ in _sql()}
    titles = ("Openings per hour, per campaign", "by group (A/B)", "by client", "Clicks per minute by group")
    for title in (*titles, "Conversions and revenue per hour"):
        assert any(title in name for name in sql_titles), title


def test_dashboards_are_well_formed_and_reference_provisioned_datasources() -> None:
    provisioned = yaml.safe_load((ROOT / "grafana/provisioning/datasources/datasources.yml").read_text())
    uids = {ds["uid"]: ds["type"] for ds in provisioned["datasources"]}
    assert uids == {"prometheus": "prometheus", "mysql": "mysql"}
    provider = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/dashboards.yml").read_text())["providers"][0]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert {p.name for p in DASHBOARDS} == {"api-health.json", "campaigns-live.json", "infrastructure.json"}
    seen_uids = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] not in seen_uids
        seen_uids.add(dashboard["uid"])
        assert dashboard["title"].startswith("PixelTracking")
        variables = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
        for var in dashboard.get("templating", {}).get("list", []):
            assert uids.get(var["datasource"]["uid"]) == var["datasource"]["type"]
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), path.name
        assert dashboard["panels"], path.name
        for panel in dashboard["panels"]:
            assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
            assert uids.get(panel["datasource"]["uid"]) == panel["datasource"]["type"], panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert uids.get(target["datasource"]["uid"]) == target["datasource"]["type"], panel["title"]
                query = target.get("expr") or target.get("rawSql")
                assert query, panel["title"]
                used = set(re.findall(r"\$(?!__)(\w+)", query))
                assert used <= variables, (panel["title"], used - variables)


# --- a real Prometheus scraping the live app ---------------------------------------------------


class _FakeCadvisor(BaseHTTPRequestHandler):
    """Serves cAdvisor's container metrics (names and labels as cAdvisor exposes them)."""

    started = time.monotonic()

    def do_GET(self) -> None:
        cpu = time.monotonic() - self.started
        body = (
            "# TYPE container_cpu_usage_seconds_total counter\n"
            f'container_cpu_usage_seconds_total{{cpu="total",id="/docker/abc",name="pixeltrack-api-1"}} {cpu * 0.4}\n'
            f'container_cpu_usage_seconds_total{{cpu="total",id="/docker/def",name="pixeltrack-worker-1"}} {cpu * 0.2}\n'
            "# TYPE container_memory_working_set_bytes gauge\n"
            'container_memory_working_set_bytes{id="/docker/abc",name="pixeltrack-api-1"} 1.2e+08\n'
            'container_memory_working_set_bytes{id="/docker/def",name="pixeltrack-worker-1"} 6.4e+07\n'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


def _wait_http(
    url: str, deadline: float, proc: subprocess.Popen[bytes] | None = None, authorized: bool = False
) -> None:
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"} if authorized else {}
    while True:
        try:
            if httpx.get(url, headers=headers, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(url)
        time.sleep(0.1)


def _query(prom: str, expr: str) -> dict[str, Any]:
    response = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5)
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def live_stack(
    settings: Settings, engine: Engine, redis_client: Any, redis_url: str, db: Session, user: User, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    prometheus = _tool("prometheus")
    # Data: one campaign, two A/B groups, contacts with pixels, a link.
    campaign = factories.make_campaign(db, user)
    groups = [factories.make_group(db, campaign, name=n) for n in ("A", "B")]
    contacts = [factories.make_contact(db, groups[i % 2]) for i in range(20)]
    pixels = [factories.make_pixel(db, c) for c in contacts]
    link = factories.make_link(db, campaign)
    codec = TokenCodec(settings.fernet_keys())

    worker_port, cadvisor_port, prom_port = free_port(), free_port(), free_port()
    cadvisor = ThreadingHTTPServer(("127.0.0.1", cadvisor_port), _FakeCadvisor)
    threading.Thread(target=cadvisor.serve_forever, daemon=True).start()
    worker = subprocess.Popen(
        [str(VENV_BIN / "pixeltrack"), "worker", "--consumer", "monitoring-test"],
        env={
            **os.environ,
            "APP_ENV": "test",
            "DATABASE_URL": settings.sqlalchemy_url,
            "REDIS_URL": redis_url,
            "API_SECRET_KEY": settings.secret_key(),
            "FERNET_KEY": settings.fernet_keys()[0],
            "WORKER_METRICS_PORT": str(worker_port),
            "WORKER_METRICS_HOST": "127.0.0.1",
            "METRICS_TOKEN": METRICS_TOKEN,
            "LOG_LEVEL": "WARNING",
        },
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    dispatcher_port = free_port()
    dispatcher = subprocess.Popen(
        [str(VENV_BIN / "pixeltrack"), "dispatcher"],
        env={
            **os.environ,
            "APP_ENV": "test",
            "DATABASE_URL": settings.sqlalchemy_url,
            "API_SECRET_KEY": settings.secret_key(),
            "FERNET_KEY": settings.fernet_keys()[0],
            "WORKER_METRICS_PORT": str(dispatcher_port),
            "WORKER_METRICS_HOST": "127.0.0.1",
            "METRICS_TOKEN": METRICS_TOKEN,
            "LOG_LEVEL": "WARNING",
        },
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    app = create_asgi(settings.model_copy(update={"redis_url": redis_url, "metrics_token": SecretStr(METRICS_TOKEN)}))
    prom_proc = None
    try:
        with live_server(app) as api:
            deadline = time.monotonic() + 60
            _wait_http(f"http://127.0.0.1:{worker_port}/metrics", deadline, worker, authorized=True)
            _wait_http(f"http://127.0.0.1:{dispatcher_port}/metrics", deadline, dispatcher, authorized=True)
            # Prometheus scrapes with the token, as in compose: up == 1 below proves it is sent.
            (tmp_path / "metrics_token").write_text(METRICS_TOKEN)
            config = _with_token_file(
                yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text()), tmp_path / "metrics_token"
            )
            config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
            config["rule_files"] = [str(ROOT / "prometheus" / "rules.yml")]
            local = {
                "api": api.removeprefix("http://"),
                "worker": f"127.0.0.1:{worker_port}",
                "dispatcher": f"127.0.0.1:{dispatcher_port}",
                "cadvisor": f"127.0.0.1:{cadvisor_port}",
            }
            for job in config["scrape_configs"]:
                job.pop("dns_sd_configs", None)
                job["static_configs"] = [{"targets": [local[job["job_name"]]]}]
            (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
            prom_proc = subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            prom = f"http://127.0.0.1:{prom_port}"
            _wait_http(f"{prom}/-/ready", deadline, prom_proc)
            headers = factories.headers_for(settings, user)
            clients = ["Mozilla/5.0", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"]

            def traffic(round_: int) -> None:
                with httpx.Client(base_url=api, timeout=5) as http:
                    for i, pixel in enumerate(pixels):
                        http.get(f"/o/{codec.pixel_token(pixel.id)}.gif", headers={"User-Agent": clients[i % 2]})
                    http.get("/o/invalid.gif")
                    http.get(f"/c/{codec.click_token(link.id, contacts[round_ % len(contacts)].id)}")
                    http.get("/api/v1/campaigns", headers=headers)
                    http.get("/api/v1/campaigns")  # 401
                    http.get("/api/v1/campaigns/999999", headers=headers)  # 404
                # New openings each round: forget the dedupe keys.
                keys = redis_client.keys("pt:d:*")
                if keys:
                    redis_client.delete(*keys)

            yield {"prom": prom, "traffic": traffic, "campaign": campaign, "deadline": deadline}
    finally:
        if prom_proc is not None:
            prom_proc.terminate()
            prom_proc.wait(30)
        for child in (worker, dispatcher):
            child.terminate()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
        cadvisor.shutdown()


def test_every_dashboard_promql_returns_data_and_rules_evaluate(live_stack: dict[str, Any]) -> None:
    prom, traffic = live_stack["prom"], live_stack["traffic"]
    exprs = [
        (name, expr.replace("$__rate_interval", RATE_INTERVAL).replace("$campaign", str(live_stack["campaign"].id)))
        for name, expr in _promql()
    ]
    assert len(exprs) >= 15
    missing: list[str] = []
    deadline = time.monotonic() + 90
    round_ = 0
    while time.monotonic() < deadline:
        traffic(round_)
        round_ += 1
        missing = []
        for name, expr in exprs:
            body = _query(prom, expr)
            assert body["status"] == "success", (name, expr, body)
            if not body["data"]["result"]:
                missing.append(name)
        if not missing and round_ >= 3:
            break
    assert not missing, f"no data after {round_} rounds of traffic: {missing}"
    rules = httpx.get(f"{prom}/api/v1/rules", timeout=5).json()["data"]["groups"]
    evaluated = [r for g in rules for r in g["rules"]]
    assert len(evaluated) == 7
    assert all(r["health"] == "ok" for r in evaluated), [(r["name"], r.get("lastError")) for r in evaluated]
    up = _query(prom, "up")["data"]["result"]
    expected = {("api", "1"), ("worker", "1"), ("dispatcher", "1"), ("cadvisor", "1")}
    assert {(r["metric"]["job"], r["value"][1]) for r in up} == expected


def _expand_grafana_macros(sql: str, campaign_id: int) -> str:
    """Grafana's MySQL macros, as the MySQL datasource expands them."""
    now = datetime.now(UTC)
    start, end = int((now - timedelta(days=1)).timestamp()), int((now + timedelta(minutes=5)).timestamp())
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 BETWEEN FROM_UNIXTIME({start}) AND FROM_UNIXTIME({end})", sql)

    def time_group(match: re.Match[str]) -> str:
        column, interval = match.group(1).strip(), match.group(2).strip().strip("'")
        seconds = int(interval[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[interval[-1]]
        return f"cast(cast(UNIX_TIMESTAMP({column})/({seconds}) as signed)*{seconds} as signed)"

    sql = re.sub(r"\$__timeGroup\(([^,]+),\s*([^)]+)\)", time_group, sql)
    sql = sql.replace("$__unixEpochFrom()", str(start)).replace("$__unixEpochTo()", str(end))
    return sql.replace("$campaign", str(campaign_id))


@pytest.mark.mysql_only
def test_every_dashboard_sql_query_returns_rows_on_mariadb(engine: Engine, db: Session, user: User) -> None:
    tree = factories.make_tree(db, user)  # a campaign with a group, a contact and an opening now
    factories.make_click(db, tree["link"], tree["contact"])
    factories.make_conversion(db, tree["contact"], value="42.5", currency="EUR")  # a conversion now
    factories.make_contact(db, factories.make_group(db, tree["campaign"], name="B"))  # an arm to compare
    queries = _sql()
    assert len(queries) >= 3
    for name, sql in queries:
        with engine.connect() as conn:
            rows = conn.execute(text(_expand_grafana_macros(sql, tree["campaign"].id))).all()
        assert rows, name


@pytest.mark.mysql_only
def test_ab_table_shows_what_the_stats_api_says(
    engine: Engine, db: Session, user: User, client: TestClient, settings: Settings
) -> None:
    """The A/B panel (group counters) and GET /stats agree group by group, with the same definitions
    (docs/api.md#what-each-figure-counts), the highest human open rate on top."""
    campaign = factories.make_campaign(db, user)
    groups = [factories.make_group(db, campaign, name=name) for name in ("A", "B", "empty")]
    link = factories.make_link(db, campaign)
    for i in range(6):
        contact = factories.make_contact(db, groups[i % 2], status="sent" if i < 5 else "scheduled")
        pixel = factories.make_pixel(db, contact)
        for kind in ["browser", "apple_mpp", "bot"][: i % 4 if i < 5 else 0]:
            factories.make_opening(db, pixel, client=kind)
        if i == 3:
            factories.make_click(db, link, contact, client="browser")
        if i == 0:
            factories.make_click(db, link, contact, client="scanner")
        if i == 4:
            factories.make_click(db, link, contact, client="browser")  # no opening: an inferred open
    factories.make_opening(db, pixel, client="unknown")  # the scheduled contact's: not human
    [(name, sql)] = [(name, sql) for name, sql in _sql() if "A/B: human vs total" in name]
    with engine.connect() as conn:
        table = [row._asdict() for row in conn.execute(text(_expand_grafana_macros(sql, campaign.id)))]
    response = client.get(f"/api/v1/campaigns/{campaign.id}/stats", headers=factories.headers_for(settings, user))
    assert response.status_code == 200, response.text
    stats = response.json()
    api = {g["name"]: g for g in stats["groups"]}
    assert [row["group"] for row in table] == ["B", "A", "empty"]  # human open rates 2/2, 2/3, none
    same = {
        "contacts": "contacts_scheduled",
        "sent": "contacts_sent",
        **{field: field for field in ("total_opens", "unique_opens", "human_opens", "machine_opens")},
        **{field: field for field in ("unknown_opens", "human_unique_opens", "inferred_opens", "unique_clicks")},
        **{field: field for field in ("human_unique_clicks", "scanner_clicks")},
    }
    rates = {"open_rate_pct": "open_rate", "human_open_rate_pct": "human_open_rate"}
    rates["human_click_rate_pct"] = "human_click_through_rate"
    assert set(table[0]) == {"group", *same, *rates}
    for row in table:
        g = api[row["group"]]
        assert {column: row[column] for column in same} == {column: g[field] for column, field in same.items()}, name
        for column, field in rates.items():
            rate = None if row[column] is None else float(row[column])
            assert rate == (None if g["contacts_sent"] == 0 else round(100 * g[field], 1)), (name, column)
    assert (api["A"]["inferred_opens"], api["A"]["scanner_clicks"], api["B"]["unknown_opens"]) == (1, 1, 1)


@pytest.mark.mysql_only
def test_ab_confidence_panel_agrees_with_the_stats_api(
    engine: Engine, db: Session, user: User, client: TestClient, settings: Settings
) -> None:
    """With one arm and counts large enough for the z-test, the panel's difference and p-value are
    the API's (`ab`): the same counts, the same test, the normal tail to better than 1e-7."""
    campaign = factories.make_campaign(db, user)
    control = make_arm(db, campaign, "A", 40, opened=10, clicked=5)
    arm = make_arm(db, campaign, "B", 40, opened=16, clicked=22)
    [(_, opens_sql), (_, clicks_sql)] = [(n, sql) for n, sql in _sql() if "A/B confidence" in n]
    response = client.get(f"/api/v1/campaigns/{campaign.id}/stats", headers=factories.headers_for(settings, user))
    assert response.status_code == 200, response.text
    [ab] = [g["ab"] for g in response.json()["groups"] if g["group_id"] == arm.id]
    for sql, metric in ((opens_sql, "opens"), (clicks_sql, "clicks")):
        with engine.connect() as conn:
            [row] = [r._asdict() for r in conn.execute(text(_expand_grafana_macros(sql, campaign.id)))]
        assert (row["group"], row["control"], row["contacts"]) == ("B", "A", 40)
        assert ab[metric]["test"] == "z"
        assert float(row["difference_pct_points"]) == pytest.approx(100 * ab[metric]["difference"], abs=0.006)
        assert float(row["p_value"]) == pytest.approx(ab[metric]["p_value"], rel=1e-3)
    assert control.id < arm.id  # (the control is the first group)


@pytest.mark.mysql_only
def test_conversions_panel_agrees_with_the_stats_api(
    engine: Engine, db: Session, user: User, client: TestClient, settings: Settings
) -> None:
    """The conversions panel (per group and hour) and the revenue (per currency and hour) add up to
    the conversions and revenue of GET /stats, over the hours of the panel's time range."""
    campaign = factories.make_campaign(db, user)
    a, b = factories.make_group(db, campaign, name="A"), factories.make_group(db, campaign, name="B")
    with factories.one_commit(db):
        for group, values in ((a, ["10.25", "0.1", None]), (b, ["0.2"])):
            for value in values:
                contact = factories.make_contact(db, group, status="sent")
                factories.make_conversion(db, contact, value=value, currency=value and "EUR")
        factories.make_conversion(db, factories.make_contact(db, b, status="sent"), value="3", currency="USD")
    [(_, count_sql), (_, revenue_sql)] = [(n, sql) for n, sql in _sql() if "Conversions and revenue" in n]
    with engine.connect() as conn:
        counts = conn.execute(text(_expand_grafana_macros(count_sql, campaign.id))).all()
        revenue = conn.execute(text(_expand_grafana_macros(revenue_sql, campaign.id))).all()
    response = client.get(f"/api/v1/campaigns/{campaign.id}/stats", headers=factories.headers_for(settings, user))
    assert response.status_code == 200, response.text
    stats = response.json()
    per_group = {g["name"]: g["conversions"] for g in stats["groups"]}
    assert per_group == {"A": 3, "B": 2}
    assert {name: sum(n for _, metric, n in counts if metric == name) for name in per_group} == per_group
    panel_revenue: dict[str, Decimal] = {}
    for _, metric, total in revenue:
        panel_revenue[metric] = panel_revenue.get(metric, Decimal(0)) + Decimal(total)
    assert stats["revenue"] == {"EUR": "10.5500", "USD": "3.0000"}
    assert panel_revenue == {f"revenue {currency}": Decimal(v) for currency, v in stats["revenue"].items()}
