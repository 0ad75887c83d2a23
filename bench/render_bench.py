"""Render throughput (issue #13: >= 2,000 contacts/s in one process, streamed in bounded memory).

Usage (MariaDB on loopback and redis-server installed, or `--db sqlite`):

    .venv/bin/python -m bench.render_bench [--contacts 20000] [--db mysql|sqlite]

1. starts the API as shipped (`pixeltrack serve --no-worker`, one uvicorn process) on a fresh
   database (MariaDB + a private Redis, or an embedded SQLite file);
2. imports `--contacts` contacts (10,000 per call) into one group;
3. renders a 30 KB HTML with 10 links (and a text part) for the group twice, read as a stream:
   the first render creates every pixel and the links, the second finds them; per render the
   contacts/s, the time to the first line, and the API process's peak RSS growth;
4. measures where one contact's line goes in this process (the per-contact part alone, without
   the database or HTTP: tokens, joining, JSON), with a profile;
5. writes bench/results/render-latest.{md,json}.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from bench.pixel_bench import RESULTS, log
from bench.servers import PrivateRedis, free_port, fresh_database, production_env, start_api, stop

ADMIN, ADMIN_PASSWORD = "bench-admin", "bench-admin-password"
LINKS = 10
TEMPLATE_BYTES = 30_000


def template() -> str:
    """A 30 KB newsletter: a table layout with inline styles, 10 tracked links, entities, an Outlook conditional."""
    story = (
        '<tr><td style="padding:12px 24px;font-family:Arial,Helvetica,sans-serif;font-size:15px;line-height:22px;'
        'color:#333333;">Story {i}: r&eacute;sum&eacute; &amp; more, everything you need this week. '
        '<a href="https://shop.example.com/stories/{i}?ref=newsletter&amp;lang=en" target="_blank" '
        'style="color:#0b5cad;text-decoration:underline;">Read story {i}</a></td></tr>\n'
    )
    filler = (
        '<tr><td style="padding:8px 24px;font-family:Arial,Helvetica,sans-serif;font-size:13px;color:#666666;">'
        "Sed ut perspiciatis unde omnis iste natus error sit voluptatem accusantium doloremque laudantium, "
        "totam rem aperiam, eaque ipsa quae ab illo inventore veritatis.</td></tr>\n"
    )
    head = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Weekly</title>'
        "<style>td{mso-line-height-rule:exactly}</style><!--[if mso]><style>table{border-collapse:collapse}"
        '</style><![endif]--></head><body style="margin:0"><table role="presentation" width="100%">\n'
    )
    body = head + "".join(story.format(i=i) for i in range(LINKS))
    while len(body) < TEMPLATE_BYTES:
        body += filler
    return body + "</table></body></html>"


class PeakRss(threading.Thread):
    """Samples a process's RSS every 20 ms; `peak` is the highest seen since `reset()`."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stopped = pid, 0, threading.Event()

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def reset(self) -> int:
        self.peak = self.rss()
        return self.peak

    def run(self) -> None:
        while not self.stopped.wait(0.02):
            self.peak = max(self.peak, self.rss())


def render_once(http: httpx.Client, campaign_id: int, body: dict[str, Any], rss: PeakRss) -> dict[str, Any]:
    before = rss.reset()
    started = time.perf_counter()
    first = None
    lines = size = 0
    with http.stream("POST", f"/api/v1/campaigns/{campaign_id}/render", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if first is None:
                first = time.perf_counter() - started
            lines += 1
            size += len(line) + 1
    seconds = time.perf_counter() - started
    return {
        "contacts": lines,
        "seconds": round(seconds, 2),
        "contacts_per_s": round(lines / seconds),
        "first_line_s": round(first or 0.0, 3),
        "mb_streamed": round(size / 1e6, 1),
        "rss_before_mb": round(before / 1e6, 1),
        "rss_peak_mb": round(rss.peak / 1e6, 1),
        "rss_growth_mb": round((rss.peak - before) / 1e6, 1),
    }


def per_contact_profile(html: str, text: str) -> dict[str, Any]:
    """The per-contact part alone, in this process: contacts/s and the functions it spends its time in."""
    from app.schemas.render import RenderRequest
    from app.services.render import Renderer
    from app.services.sendprep import Recipient
    from app.tracking.tokens import TokenCodec
    from app.tracking.urls import TrackingUrls

    urls = TrackingUrls("https://track.example.com", TokenCodec([Fernet.generate_key().decode()]))
    renderer = Renderer(RenderRequest(html=html, text=text, utm={"source": "newsletter"}), urls)
    renderer.links.ids = list(range(1, len(renderer.links.urls) + 1))
    assert len(renderer.links.urls) == LINKS
    people = [Recipient(i, f"user{i}@example.com", f"User {i}", "full", None, "scheduled", i) for i in range(10_000)]
    started = time.perf_counter()
    for person in people:
        renderer.line(person).encode("utf-8")
    rate = len(people) / (time.perf_counter() - started)
    profile = cProfile.Profile()
    profile.enable()
    for person in people[:3000]:
        renderer.line(person).encode("utf-8")
    profile.disable()
    stats = pstats.Stats(profile)
    total = sum(entry[2] for entry in stats.stats.values())  # type: ignore[attr-defined]
    top = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:8]  # type: ignore[attr-defined]
    return {
        "contacts_per_s": round(rate),
        "own_time_share": [
            {"function": f"{Path(file).name}:{line}({name})", "share": round(entry[2] / total, 3)}
            for (file, line, name), entry in top
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--db", choices=["mysql", "sqlite"], default="mysql")
    opts = parser.parse_args()
    load_before = os.getloadavg()[0]
    fernet_key = Fernet.generate_key().decode()
    redis = None
    if opts.db == "mysql":
        redis = PrivateRedis()
        env = production_env(fresh_database("pixeltrack_render_bench"), redis.url, fernet_key)
    else:
        scratch = tempfile.mkdtemp(prefix="pixeltrack-render-bench-")
        env = {
            "DATABASE_URL": f"sqlite:///{scratch}/render.db",
            "FERNET_KEY": fernet_key,
            "SECRETS_FILE": f"{scratch}/secrets.json",
        }
    env |= {"FIRST_ADMIN_USERNAME": ADMIN, "FIRST_ADMIN_PASSWORD": ADMIN_PASSWORD, "RATE_LIMIT_PER_MINUTE": "0"}
    port = free_port()
    api = start_api(port, env)
    html = template()
    stories = (f"Story {i}: https://shop.example.com/stories/{i}?ref=newsletter&lang=en" for i in range(3))
    text = "Hello,\n\n" + "\n".join(stories)  # (the same destinations as three of the HTML's links)
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
        token = http.post("/auth/token", data={"username": ADMIN, "password": ADMIN_PASSWORD})
        token.raise_for_status()
        http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        campaign = http.post("/api/v1/campaigns", json={"name": "render bench"}).json()["id"]
        group = http.post(f"/api/v1/campaigns/{campaign}/groups", json={"name": "all"}).json()["id"]
        log(f"importing {opts.contacts} contacts ...")
        for start in range(0, opts.contacts, 10_000):
            rows = [
                {"email": f"c{i}@example.com", "name": f"Contact {i}"}
                for i in range(start, min(start + 10_000, opts.contacts))
            ]
            http.post(f"/api/v1/groups/{group}/contacts", json=rows).raise_for_status()
        rss = PeakRss(api.pid)
        rss.start()
        body = {"html": html, "text": text, "group_id": group, "utm": {"source": "newsletter", "medium": "email"}}
        log("render 1 (creates the pixels and links) ...")
        first = render_once(http, campaign, body, rss)
        log(f"  {first}")
        log("render 2 (pixels and links exist) ...")
        second = render_once(http, campaign, body, rss)
        log(f"  {second}")
        rss.stopped.set()
    finally:
        stop(api)
        if redis is not None:
            redis.stop()
    log("per-contact part in this process ...")
    alone = per_contact_profile(html, text)
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "api_as": "pixeltrack serve --no-worker (1 uvicorn process), "
        + ("MariaDB + private Redis" if opts.db == "mysql" else "SQLite"),
        "load_average_at_start": round(load_before, 2),
        "template": {"bytes": len(html.encode()), "links": LINKS},
        "render_creating_pixels": first,
        "render_again": second,
        "per_contact_only": alone,
        "targets": {
            ">= 2,000 contacts/s": min(first["contacts_per_s"], second["contacts_per_s"]) >= 2000,
            "RSS growth < 100 MB": max(first["rss_growth_mb"], second["rss_growth_mb"]) < 100,
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "render-latest.json").write_text(json.dumps(summary, indent=2) + "\n")
    rows_md = [
        f"| {name} | {r['contacts']:,} | {r['seconds']} | **{r['contacts_per_s']:,}** | {r['first_line_s']} | "
        f"{r['mb_streamed']} | {r['rss_before_mb']} → {r['rss_peak_mb']} |"
        for name, r in (("first (creates pixels + links)", first), ("again (finds them)", second))
    ]
    lines = [
        "# Render throughput (latest run)",
        "",
        f"{summary['when']} — {summary['machine']}; API: {summary['api_as']}; load average {load_before:.1f} at "
        "start (2 cores shared: the client reading the stream runs on the same machine).",
        f"Template: {summary['template']['bytes']:,} bytes of HTML with {LINKS} links, a text part with 3 of them, UTM.",
        "",
        "| render | contacts | s | contacts/s | first line s | MB streamed | API RSS before → peak MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows_md,
        "",
        f"The per-contact part alone (no database, no HTTP): {alone['contacts_per_s']:,} contacts/s. Own time:",
        "",
        *[f"- {item['function']}: {item['share']:.0%}" for item in alone["own_time_share"]],
        "",
        "| target | met |",
        "|---|---|",
        *[f"| {k} | {'yes' if v else 'no'} |" for k, v in summary["targets"].items()],
        "",
    ]
    (RESULTS / "render-latest.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if all(summary["targets"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
