"""Campaign stats benchmark (targets: docs/benchmarks.md): `GET /api/v1/campaigns/{id}/stats` on 100,000 contacts
and 1,000,000 openings must answer in < 200 ms.

Usage (MariaDB on loopback):

    .venv/bin/python -m bench.stats_bench [--contacts 100000] [--openings 1000000] [--calls 9] [--reuse]

In one run it
1. creates a fresh MariaDB database (`pixeltrack_stats_bench`) and migrates it (Alembic head);
2. seeds one campaign: 3 groups (two A/B arms sharing the contacts, one empty), `--contacts`
   contacts (90 % sent, 10 % still scheduled), one pixel each (every 10th contact has a
   second one), `--openings` openings spread over 14 days and over every client kind
   (70 % of the contacts open), 100,000 clicks on 2 links — all with multi-row
   `INSERT ... SELECT` from MariaDB's SEQUENCE engine (`seq_1_to_N`), no Python loop;
3. times the stats endpoint through the real app (`app.main:create_app` in-process, httpx via
   Starlette's TestClient): warm-up, then the median of `--calls` calls, without and with
   `?bucket=day` (and `?bucket=hour`);
4. prints the timings as ratios against the 200 ms target, the EXPLAIN of the heavy queries,
   and writes bench/results/stats-latest.{md,json}.

`--reuse` skips steps 1-2 when the database already holds the seeded campaign (migrating it to
the head revision first).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.db import make_engine
from app.main import create_app
from app.migrations import upgrade
from app.models import Campaign, Click, Contact, Opening, Pixel, User
from app.security import create_access_token
from app.services import counters
from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SERVER_URL = os.environ.get("BENCH_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4")
DB_NAME = "pixeltrack_stats_bench"
TARGET_MS = 200.0
START = "2026-03-02 08:00:00"
CLIENTS = ["browser", "apple_mpp", "gmail_proxy", "browser", "outlook_proxy", "yahoo_proxy", "bot", "unknown"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def database_url() -> str:
    return make_url(SERVER_URL).set(database=DB_NAME).render_as_string(hide_password=False)


def fresh_database() -> str:
    server = make_url(SERVER_URL)
    admin = create_engine(server)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{DB_NAME}`"))
        conn.execute(text(f"CREATE DATABASE `{DB_NAME}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
    admin.dispose()
    return database_url()


def _sequence(conn: Any, n: int) -> str:
    """A table of the integers 1..n: MariaDB's SEQUENCE engine, else a cross join of digits."""
    has_sequence = conn.scalar(
        text(
            "SELECT COUNT(*) FROM information_schema.engines WHERE engine = 'SEQUENCE' AND support IN ('YES', 'DEFAULT')"
        )
    )
    if has_sequence:
        return f"seq_1_to_{n}"
    conn.execute(text("CREATE TEMPORARY TABLE digits (d INT PRIMARY KEY)"))
    conn.execute(text("INSERT INTO digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9)"))
    joins = " CROSS JOIN ".join(f"digits d{i}" for i in range(7))
    number = " + ".join(f"d{i}.d * {10**i}" for i in range(7))
    return f"(SELECT {number} + 1 AS seq FROM {joins} HAVING seq <= {n})"


def seed(engine: Engine, contacts: int, openings: int, clicks: int) -> int:
    """Seed one campaign with SQL only (INSERT ... SELECT); returns its id."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    openers = contacts * 7 // 10
    clients = ", ".join(f"'{c}'" for c in CLIENTS)
    with engine.begin() as conn:
        conn.execute(text("SET SESSION unique_checks = 0, foreign_key_checks = 0"))
        conn.execute(
            text(
                "INSERT INTO users (username, email, hashed_password, is_admin, is_active, token_version, created_at) "
                "VALUES ('bench', 'bench@example.com', 'x', 0, 1, 0, :now)"
            ),
            {"now": now},
        )
        uid = conn.scalar(select(User.id).where(User.username == "bench"))
        conn.execute(
            text(
                "INSERT INTO campaigns (owner_id, name, created_at, updated_at) VALUES (:u, 'stats bench', :now, :now)"
            ),
            {"u": uid, "now": now},
        )
        cid = conn.scalar(select(Campaign.id).where(Campaign.owner_id == uid))
        for name in ("A", "B", "C (empty)"):
            conn.execute(
                text("INSERT INTO `groups` (campaign_id, name, created_at) VALUES (:c, :n, :now)"),
                {"c": cid, "n": name, "now": now},
            )
        gids = list(conn.scalars(text("SELECT id FROM `groups` WHERE campaign_id = :c ORDER BY id"), {"c": cid}))
        seq = _sequence(conn, max(contacts, openings, clicks))

        started = time.perf_counter()
        conn.execute(
            text(
                "INSERT INTO contacts (campaign_id, group_id, email, name, scheduled_at, status, sent_at, "
                "created_at, updated_at) "
                f"SELECT :c, IF(seq % 2 = 1, :ga, :gb), CONCAT('c', seq, '@example.com'), NULL, "
                f"TIMESTAMP(:start) + INTERVAL (seq % 3600) SECOND, IF(seq % 10 = 0, 'scheduled', 'sent'), "
                f"IF(seq % 10 = 0, NULL, TIMESTAMP(:start) + INTERVAL (seq % 3600 + 5) SECOND), :now, :now "
                f"FROM {seq} WHERE seq <= :n"
            ),
            {"c": cid, "ga": gids[0], "gb": gids[1], "start": START, "now": now, "n": contacts},
        )
        first_contact = conn.scalar(select(func.min(Contact.id)).where(Contact.campaign_id == cid))
        log(f"  contacts: {contacts:,} in {time.perf_counter() - started:.1f} s")

        started = time.perf_counter()
        conn.execute(
            text(
                "INSERT INTO pixels (uuid, contact_id, number, created_at) "
                "SELECT LPAD(HEX(id), 32, '0'), id, 1, :now FROM contacts WHERE campaign_id = :c ORDER BY id"
            ),
            {"c": cid, "now": now},
        )
        conn.execute(
            text(
                "INSERT INTO pixels (uuid, contact_id, number, created_at) "
                "SELECT CONCAT('2', LPAD(HEX(id), 31, '0')), id, 2, :now FROM contacts "
                "WHERE campaign_id = :c AND id % 10 = 0 ORDER BY id"
            ),
            {"c": cid, "now": now},
        )
        first_pixel = conn.scalar(select(func.min(Pixel.id)))
        log(f"  pixels: {time.perf_counter() - started:.1f} s")

        # Opening k goes to contact (k * 7919) mod openers (a scatter over 70 % of the contacts),
        # through its first pixel (pixel ids follow contact ids), at a time spread over 14 days.
        started = time.perf_counter()
        conn.execute(
            text(
                "INSERT INTO openings (pixel_id, contact_id, campaign_id, opened_at, ip, user_agent, client, event_id) "
                "SELECT :p0 + k, :c0 + k, :c, "
                "TIMESTAMP(:start) + INTERVAL (3600 + seq * 37 % (14 * 86400)) SECOND + INTERVAL (seq % 1000) MICROSECOND, "
                "'203.0.113.9', 'Mozilla/5.0 (bench)', ELT(1 + seq % :nclients, "
                + clients
                + "), CONCAT('bench-o-', seq) "
                f"FROM (SELECT seq, (seq * 7919) % :openers AS k FROM {seq} WHERE seq <= :n) s"
            ),
            {
                "p0": first_pixel,
                "c0": first_contact,
                "c": cid,
                "start": START,
                "openers": openers,
                "n": openings,
                "nclients": len(CLIENTS),
            },
        )
        log(f"  openings: {openings:,} in {time.perf_counter() - started:.1f} s")

        started = time.perf_counter()
        for url in ("https://shop.example.com/spring", "https://shop.example.com/unsubscribe"):
            conn.execute(
                text(
                    "INSERT INTO links (campaign_id, url, uuid, created_at) VALUES (:c, :u, LPAD(HEX(:h), 32, '0'), :now)"
                ),
                {"c": cid, "u": url, "h": len(url), "now": now},
            )
        first_link = conn.scalar(text("SELECT MIN(id) FROM links WHERE campaign_id = :c"), {"c": cid})
        conn.execute(
            text(
                "INSERT INTO clicks (link_id, contact_id, campaign_id, clicked_at, ip, user_agent, client, event_id) "
                "SELECT :l0 + seq % 2, :c0 + (seq * 104729) % (:openers DIV 3), :c, "
                "TIMESTAMP(:start) + INTERVAL (7200 + seq * 53 % (14 * 86400)) SECOND, "
                "'203.0.113.9', 'Mozilla/5.0 (bench)', ELT(1 + seq % :nclients, "
                + clients
                + "), CONCAT('bench-c-', seq) "
                f"FROM {seq} WHERE seq <= :n"
            ),
            {
                "l0": first_link,
                "c0": first_contact,
                "c": cid,
                "start": START,
                "openers": openers,
                "n": clicks,
                "nclients": len(CLIENTS),
            },
        )
        log(f"  clicks: {clicks:,} in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        counters.rebuild(conn, int(cid))  # type: ignore[arg-type]
        log(f"  report counters: {time.perf_counter() - started:.1f} s")
    with engine.connect() as conn:
        for table in ("contacts", "pixels", "openings", "clicks", "contact_stats", "campaign_hours"):
            conn.execute(text(f"ANALYZE TABLE {table}"))
    return int(cid)  # type: ignore[arg-type]


class StatementTimer:
    """Times every SQL statement the app runs (SQLAlchemy cursor events on the app's engine)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, float]] = []
        self._started = 0.0
        self.active = False

    def before(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self._started = time.perf_counter()

    def after(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if self.active:
            self.records.append((statement, (time.perf_counter() - self._started) * 1000))


def _label(statement: str) -> str:
    flat = " ".join(statement.split())
    rules = [
        ("TO_SECONDS(clicks", "series: clicks per bucket"),
        ("TO_SECONDS(openings", "series: opens, unique opens per bucket"),
        ("max(openings.opened_at)", "series: default range (openings)"),
        ("max(clicks.clicked_at)", "series: default range (clicks)"),
        ("row_number()", "first opening per contact, unique opens, medians"),
        ("FROM clicks", "clicks, unique clicks per group"),
        ("GROUP BY openings.contact_id, openings.client", "opens per group and client"),
        ("JOIN pixels", "pixels per group"),
        ("LEFT OUTER JOIN contacts", "groups, contacts, sent"),
        ("FROM campaigns", "campaign (ownership)"),
        ("FROM users", "user (auth)"),
    ]
    for needle, label in rules:
        if needle.lower() in flat.lower():
            return label
    return flat[:60]


def time_endpoint(url: str, cid: int, calls: int, warmup: int = 2) -> dict[str, Any]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        app_env="test",
        database_url=url,
        api_secret_key=Fernet.generate_key().decode() + "-bench-secret",
        fernet_key=Fernet.generate_key().decode(),
        redis_url=None,
        redis_host=None,
        secrets_file=str(RESULTS / "tmp" / "stats-secrets.json"),
        log_level="WARNING",
        # No per-user request limit here (the setting exists only in builds that have one).
        **({"rate_limit_per_minute": 0} if "rate_limit_per_minute" in Settings.model_fields else {}),
    )
    engine = make_engine(url)
    with engine.connect() as conn:
        uid, version = conn.execute(select(User.id, User.token_version).where(User.username == "bench")).one()
    engine.dispose()
    token = create_access_token(
        uid, version, secret=settings.secret_key(), algorithm=settings.api_secret_algorithm, expires_minutes=60
    )
    headers = {"Authorization": f"Bearer {token}"}
    variants = {"stats": "", "stats?bucket=day": "?bucket=day", "stats?bucket=hour": "?bucket=hour"}
    results: dict[str, Any] = {}
    app = create_app(settings)
    timer = StatementTimer()
    with TestClient(app) as client:
        event.listen(app.state.engine, "before_cursor_execute", timer.before)
        event.listen(app.state.engine, "after_cursor_execute", timer.after)
        for name, query in variants.items():
            path = f"/api/v1/campaigns/{cid}/stats{query}"
            for _ in range(warmup):
                assert client.get(path, headers=headers).status_code == 200
            times = []
            per_statement: dict[str, list[float]] = {}
            body: dict[str, Any] = {}
            for _ in range(calls):
                timer.records.clear()
                timer.active = True
                started = time.perf_counter()
                response = client.get(path, headers=headers)
                times.append((time.perf_counter() - started) * 1000)
                timer.active = False
                assert response.status_code == 200, response.text
                body = response.json()
                for statement, ms in timer.records:
                    per_statement.setdefault(_label(statement), []).append(ms)
            results[name] = {
                "median_ms": round(statistics.median(times), 1),
                "min_ms": round(min(times), 1),
                "max_ms": round(max(times), 1),
                "ratio_to_target": round(statistics.median(times) / TARGET_MS, 2),
                "statements_ms": {k: round(statistics.median(v), 1) for k, v in per_statement.items()},
                "series_points": len(body.get("series") or []),
            }
            results[name]["body"] = {k: v for k, v in body.items() if k not in ("groups", "series")}
            log(f"  {name}: median {results[name]['median_ms']} ms")
    return results


def explain(url: str, cid: int) -> dict[str, list[dict[str, Any]]]:
    """EXPLAIN of the heavy statements, as the service builds them (compiled for MariaDB)."""
    from app.services import stats

    engine = make_engine(url)
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    with Session(engine) as db:
        campaign = db.get_one(Campaign, cid)
        stats.campaign_stats(db, campaign, bucket=stats.Bucket.day)
    event.remove(engine, "before_cursor_execute", capture)
    plans: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cursor = raw.cursor()
        for statement, parameters in captured:
            cursor.execute("EXPLAIN " + statement, parameters)
            names = [d[0] for d in cursor.description]
            plans[_label(statement)] = [
                {k: v for k, v in zip(names, row, strict=True) if k in ("table", "type", "key", "rows", "Extra")}
                for row in cursor.fetchall()
            ]
        cursor.close()
    engine.dispose()
    return plans


def floor_ms(url: str, cid: int, calls: int) -> float:
    """The cost of reading the campaign's openings once: COUNT(*) on its index range."""
    engine = make_engine(url)
    times = []
    with engine.connect() as conn:
        for _ in range(calls + 1):
            started = time.perf_counter()
            conn.scalar(select(func.count()).select_from(Opening).where(Opening.campaign_id == cid))
            times.append((time.perf_counter() - started) * 1000)
    engine.dispose()
    return round(statistics.median(times[1:]), 1)


def check_counts(url: str, cid: int, body: dict[str, Any]) -> dict[str, Any]:
    """The endpoint's totals against plain COUNTs."""
    engine = make_engine(url)
    with engine.connect() as conn:
        expected = {
            "contacts_scheduled": conn.scalar(select(func.count()).where(Contact.campaign_id == cid)),
            "pixels": conn.scalar(select(func.count()).select_from(Pixel)),
            "total_opens": conn.scalar(select(func.count()).where(Opening.campaign_id == cid)),
            "unique_opens": conn.scalar(
                select(func.count(func.distinct(Opening.contact_id))).where(Opening.campaign_id == cid)
            ),
            "clicks": conn.scalar(select(func.count()).where(Click.campaign_id == cid)),
        }
    engine.dispose()
    got = {k: body.get(k) for k in expected}
    return {"expected": expected, "got": got, "ok": got == expected}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--openings", type=int, default=1_000_000)
    parser.add_argument("--clicks", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=9, help="timed calls per variant (median reported)")
    parser.add_argument("--reuse", action="store_true", help="reuse an already seeded database")
    opts = parser.parse_args()

    url = database_url()
    seeded_s = None
    if opts.reuse:
        engine = make_engine(url)
        started = time.perf_counter()
        upgrade(engine)  # (a database seeded by an older revision: its migrations fill the new counters)
        log(f"migrated to head in {time.perf_counter() - started:.1f} s")
        with engine.connect() as conn:
            cid = conn.scalar(select(Campaign.id).where(Campaign.name == "stats bench"))
        engine.dispose()
        if cid is None:
            log("no seeded campaign: run without --reuse first")
            return 2
    else:
        url = fresh_database()
        # Seeding runs statements over a million rows: no client-side read timeout (the app's
        # is meant for requests, and a busy machine takes minutes here).
        engine = make_engine(url, read_timeout=None, write_timeout=None)
        upgrade(engine)
        log(f"seeding {opts.contacts:,} contacts, {opts.openings:,} openings, {opts.clicks:,} clicks ...")
        started = time.perf_counter()
        cid = seed(engine, opts.contacts, opts.openings, opts.clicks)
        seeded_s = round(time.perf_counter() - started, 1)
        engine.dispose()
        log(f"seeded in {seeded_s} s")

    log(f"timing GET /api/v1/campaigns/{cid}/stats ({opts.calls} calls per variant after 2 warm-up calls) ...")
    timings = time_endpoint(url, cid, opts.calls)
    plans = explain(url, cid)
    check = check_counts(url, cid, timings["stats"]["body"])
    floor = floor_ms(url, cid, opts.calls)
    engine = make_engine(url)
    with engine.connect() as conn:
        server = conn.scalar(text("SELECT VERSION()"))
        pool_mb = (conn.scalar(text("SELECT @@innodb_buffer_pool_size")) or 0) // 2**20
    engine.dispose()

    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "server": f"MariaDB {server}, innodb_buffer_pool_size {pool_mb} MB",
        "data": {
            "contacts": opts.contacts,
            "openings": opts.openings,
            "clicks": opts.clicks,
            "groups": 3,
            "seed_seconds": seeded_s,
        },
        "target_ms": TARGET_MS,
        "calls": opts.calls,
        "timings": timings,
        "floor_count_openings_ms": floor,
        "count_check": check,
        "explain": plans,
        "targets": {f"{name} < {TARGET_MS:.0f} ms": t["median_ms"] < TARGET_MS for name, t in timings.items()},
    }
    lines = [
        "# Stats benchmark (latest run)",
        "",
        f"{summary['when']} — {summary['machine']}; {summary['server']}.",
        "",
        f"One campaign: {opts.contacts:,} contacts in 2 A/B groups (+1 empty group), {opts.openings:,} openings "
        f"over 14 days and every client kind (70 % of the contacts open), {opts.clicks:,} clicks. "
        f"`GET /api/v1/campaigns/{{id}}/stats` through the real app (in-process, httpx TestClient): 2 warm-up "
        f"calls, then the median of {opts.calls}.",
        "",
        "| request | median ms | min ms | max ms | vs 200 ms target |",
        "|---|---:|---:|---:|---:|",
        *[
            f"| `{name}` | **{t['median_ms']}** | {t['min_ms']} | {t['max_ms']} | {t['ratio_to_target']}x |"
            for name, t in timings.items()
        ],
        "",
        f"For scale: reading the campaign's openings once (`SELECT COUNT(*) FROM openings WHERE campaign_id = ?`, "
        f"index-only) takes **{floor} ms** here: `stats` costs "
        f"{timings['stats']['median_ms'] / floor:.2f}x that one pass. It reads the report counters "
        "(`contact_stats`: one row per contact; `campaign_hours`: one row per hour), not the openings. "
        "Earlier designs, for comparison: aggregating the openings with covering indexes (schema 0002) took "
        "640 ms (bucket=day 1,145 ms) on this data, and without those indexes (schema 0001) 27.5 s.",
        "",
        "Where the time goes (median ms per SQL statement, `stats?bucket=day`):",
        "",
        "| statement | ms |",
        "|---|---:|",
        *[f"| {k} | {v} |" for k, v in timings["stats?bucket=day"]["statements_ms"].items()],
        "",
        "EXPLAIN (MariaDB):",
        "",
        "| statement | table | type | key | rows | extra |",
        "|---|---|---|---|---:|---|",
        *[
            f"| {label} | {row.get('table')} | {row.get('type')} | {row.get('key')} | {row.get('rows')} | "
            f"{row.get('Extra') or ''} |"
            for label, rows in plans.items()
            for row in rows
        ],
        "",
        f"Totals against plain COUNTs: **{'OK' if check['ok'] else 'MISMATCH'}** ({check['got']}).",
        "",
        "| target (docs/benchmarks.md) | met |",
        "|---|---|",
        *[f"| {k} | {'yes' if v else 'no'} |" for k, v in summary["targets"].items()],
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "stats-latest.md").write_text("\n".join(lines))
    (RESULTS / "stats-latest.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print("\n".join(lines))
    return 0 if check["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
