"""Send-time benchmark (issue #13 §5): prepare a 100,000-contact send through the API as shipped.

Usage (MariaDB and redis-server on loopback):

    .venv/bin/python -m bench.sendprep_bench [--contacts 100000] [--links 10] [--html-kb 30]

In one run it
1. creates a fresh MariaDB database, starts a private redis-server and the API exactly as
   shipped (`pixeltrack serve --no-worker`, 1 uvicorn worker, the default rate limit);
2. does what a campaign tool does, counting every API call: logs in once, creates an API key
   and goes on with it; creates a campaign and a group; imports the contacts in bulk (10,000 per
   call); renders a `--html-kb` HTML with `--links` links (Outlook conditional comments, merge
   tags) plus a text part for the whole group in one streamed call, reading every line; marks
   them all sent in bulk (10,000 ids per call); reads the stats;
3. samples the API process's resident memory while the render streams (RSS growth);
4. measures the baseline of the same run: the same client streaming the same number of lines of
   the same size from a bare ASGI app (what reading the stream costs the client and the loopback,
   so that the render rate can be read against it);
5. prints the figures and the targets (≤ 60 s end to end, ≤ 40 calls, render ≥ 2,000 contacts/s,
   RSS growth < 100 MB) and writes bench/results/sendprep-latest.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from bench.pixel_bench import PORT, RESULTS, log, start_server, stop_server
from bench.servers import PrivateRedis, free_port, fresh_database, production_env, start_api, stop

ADMIN, ADMIN_PASSWORD = "bench-admin", "bench-admin-password"
CHUNK = 10_000  # the API's bulk limit (import, status)


def newsletter(kb: int, links: int) -> str:
    """A newsletter as campaign tools write them: table layout, an Outlook conditional block with
    VML, inline styles, entities, merge tags, `links` distinct tracked links and a few untouched ones."""
    head = (
        '<!DOCTYPE html>\n<html lang="en" xmlns:v="urn:schemas-microsoft-com:vml">\n<head>\n'
        '<meta charset="utf-8"><title>News &amp; offers</title>\n'
        "<!--[if mso]><xml><o:OfficeDocumentSettings><o:PixelsPerInch>96</o:PixelsPerInch>"
        "</o:OfficeDocumentSettings></xml><![endif]-->\n"
        "<style>td{font-family:Arial,sans-serif} .btn{background:#0a6}</style>\n</head>\n<body>\n"
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0">\n'
        "<tr><td>Hello {{ first_name }}, here is what&rsquo;s new.</td></tr>\n"
    )
    body: list[str] = []
    for i in range(links):
        body.append(
            f'<tr><td style="padding:12px 24px"><!--[if mso]><v:roundrect href="https://shop.example.com/p/{i}" '
            f'style="height:40px;width:200px" arcsize="10%"><center>Item {i}</center></v:roundrect><![endif]-->'
            f'<a class="btn" href="https://shop.example.com/p/{i}?ref=news#top" style="color:#fff">Item {i} &gt;</a>'
            "</td></tr>\n"
        )
    tail = (
        '<tr><td><a href="mailto:help@example.com">Write to us</a> · <a href="#top">Top</a> · '
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a></td></tr>\n</table>\n</body>\n</html>\n'
    )
    filler = (
        '<tr><td style="padding:0 24px;color:#333;line-height:1.5">Lorem ipsum dolor sit amet, consectetur '
        "adipiscing elit &mdash; sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.</td></tr>\n"
    )
    html = head + "".join(body)
    while len(html) + len(tail) < kb * 1024:
        html += filler
    return html + tail


def text_part(links: int) -> str:
    lines = ["Hello {{ first_name }},", ""]
    lines += [f"Item {i}: https://shop.example.com/p/{i}?ref=news" for i in range(links)]
    return "\n".join([*lines, "", "Unsubscribe: {{ unsubscribe_url }}", ""])


def check(ok: bool, failure: str) -> None:
    if not ok:
        raise RuntimeError(failure)


class RssSampler(threading.Thread):
    """The API process tree's resident memory (sum of VmRSS), sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, threading.Event()

    @staticmethod
    def tree_rss(pid: int) -> int:
        total, pids = 0, [pid]
        while pids:
            p = pids.pop()
            try:
                status = Path(f"/proc/{p}/status").read_text()
                total += next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS:")) * 1024
                for task in Path(f"/proc/{p}/task").iterdir():
                    pids += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, StopIteration):
                continue
        return total

    def run(self) -> None:
        while not self.done.wait(0.05):
            self.peak = max(self.peak, self.tree_rss(self.pid))


class Client:
    """httpx with a call counter: every request the campaign tool makes counts."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=600.0)
        self.calls = 0

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        self.calls += 1
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response


def prepare(base: str, api_pid: int, opts: argparse.Namespace) -> dict[str, Any]:
    client = Client(base)
    html, text = newsletter(opts.html_kb, opts.links), text_part(opts.links)
    started = time.perf_counter()
    token = client.request("POST", "/auth/token", data={"username": ADMIN, "password": ADMIN_PASSWORD}).json()
    jwt = {"Authorization": f"Bearer {token['access_token']}"}
    key = client.request("POST", "/api/v1/api-keys", json={"name": "sendprep bench"}, headers=jwt).json()["key"]
    client.http.headers["Authorization"] = f"Bearer {key}"
    campaign = client.request("POST", "/api/v1/campaigns", json={"name": "100k send"}).json()["id"]
    group = client.request("POST", f"/api/v1/campaigns/{campaign}/groups", json={"name": "everyone"}).json()["id"]

    t = time.perf_counter()
    for start in range(0, opts.contacts, CHUNK):
        rows = [
            {"email": f"c{i}@example.com", "name": f"Contact {i}"}
            for i in range(start, min(start + CHUNK, opts.contacts))
        ]
        client.request("POST", f"/api/v1/groups/{group}/contacts", json=rows)
    import_s = time.perf_counter() - t

    rss_before = RssSampler.tree_rss(api_pid)
    sampler = RssSampler(api_pid)
    sampler.start()
    t = time.perf_counter()
    ids: list[int] = []
    body_bytes = 0
    first_line_s = None
    client.calls += 1
    with client.http.stream(
        "POST", f"/api/v1/campaigns/{campaign}/render", json={"html": html, "text": text, "group_id": group}
    ) as response:
        if response.status_code != 200:
            raise RuntimeError(f"render: {response.status_code} {response.read()[:300]!r}")
        for line in response.iter_lines():
            if not line:
                continue
            if first_line_s is None:
                first_line_s = time.perf_counter() - t
            body_bytes += len(line) + 1
            item = json.loads(line)
            ids.append(item["contact_id"])
    render_s = time.perf_counter() - t
    sampler.done.set()
    sampler.join()
    check(len(ids) == opts.contacts, f"render streamed {len(ids)} lines for {opts.contacts} contacts")
    check(
        "/c/" in item["html"] and "/c/" in item["text"] and bool(item["pixel_url"]),
        "render left the links as they were",
    )

    t = time.perf_counter()
    for start in range(0, len(ids), CHUNK):
        updated = client.request(
            "PATCH", f"/api/v1/groups/{group}/contacts", json={"ids": ids[start : start + CHUNK], "status": "sent"}
        ).json()["updated"]
        check(updated == len(ids[start : start + CHUNK]), f"marked {updated} of {len(ids[start : start + CHUNK])}")
    mark_s = time.perf_counter() - t
    total_s = time.perf_counter() - started
    stats = client.request("GET", f"/api/v1/campaigns/{campaign}/stats").json()
    check(stats["contacts_sent"] == opts.contacts and stats["pixels"] == opts.contacts, f"stats: {stats}")
    return {
        "calls": client.calls,
        "total_s": round(total_s, 2),
        "import_s": round(import_s, 2),
        "render_s": round(render_s, 2),
        "render_first_line_s": round(first_line_s or 0, 3),
        "render_contacts_per_s": round(opts.contacts / render_s),
        "render_mb": round(body_bytes / 1e6, 1),
        "mark_sent_s": round(mark_s, 2),
        "rss_before_mb": round(rss_before / 1e6, 1),
        "rss_peak_mb": round(sampler.peak / 1e6, 1),
        "rss_growth_mb": round((sampler.peak - rss_before) / 1e6, 1),
        "html_bytes": len(html.encode()),
    }


def baseline(lines: int, line_bytes: int) -> float:
    """Lines per second the same client reads from a bare ASGI app streaming lines of the same size."""
    proc = start_server(["bench.apps:stream_app"], {"STREAM_LINES": str(lines), "STREAM_LINE_BYTES": str(line_bytes)})
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{PORT}", timeout=600.0) as http:
            t, n = time.perf_counter(), 0
            with http.stream("POST", "/render") as response:
                for line in response.iter_lines():
                    if line:
                        json.loads(line)
                        n += 1
            check(n == lines, f"baseline streamed {n} of {lines} lines")
            return lines / (time.perf_counter() - t)
    finally:
        stop_server(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--links", type=int, default=10, help="distinct tracked links in the HTML (default 10)")
    parser.add_argument("--html-kb", type=int, default=30, help="size of the HTML template in KB (default 30)")
    opts = parser.parse_args()

    load_before = os.getloadavg()[0]
    url = fresh_database("pixeltrack_sendprep_bench")
    redis = PrivateRedis()
    port = free_port()
    env = {
        **production_env(url, redis.url, Fernet.generate_key().decode()),
        "FIRST_ADMIN_USERNAME": ADMIN,
        "FIRST_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    log("starting pixeltrack serve --no-worker (1 worker, MariaDB + private Redis, default rate limit) ...")
    api = start_api(port, env)
    try:
        log(f"preparing {opts.contacts:,} contacts ...")
        run = prepare(f"http://127.0.0.1:{port}", api.pid, opts)
    finally:
        stop(api)
        redis.stop()

    line_bytes = int(run["render_mb"] * 1e6 / opts.contacts)
    log(f"baseline: the same client reading {opts.contacts:,} lines of {line_bytes:,} bytes from a bare ASGI app ...")
    bare = baseline(opts.contacts, line_bytes)
    run["baseline_lines_per_s"] = round(bare)
    run["render_vs_baseline"] = round(run["render_contacts_per_s"] / bare, 3)
    targets = {
        "end to end <= 60 s": run["total_s"] <= 60,
        "API calls <= 40": run["calls"] <= 40,
        "render >= 2,000 contacts/s": run["render_contacts_per_s"] >= 2000,
        "RSS growth while streaming < 100 MB": run["rss_growth_mb"] < 100,
    }
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "api_as": "pixeltrack serve --no-worker --no-sample --workers 1 (as shipped), MariaDB + private Redis",
        "load_average_at_start": round(load_before, 2),
        "contacts": opts.contacts,
        "links": opts.links,
        "run": run,
        "targets": targets,
    }
    lines = [
        "# Send-time preparation (latest run)",
        "",
        f"{summary['when']} — {summary['machine']}; API: `pixeltrack serve --no-worker` (1 uvicorn worker, "
        f"MariaDB + Redis, default rate limit), client on the same machine; load average {load_before:.1f} at start.",
        "",
        f"A campaign tool prepares **{opts.contacts:,} contacts**: login, API key, campaign, group, bulk import "
        f"({CHUNK:,} per call), one streamed render of a {run['html_bytes'] / 1024:.0f} KB HTML with {opts.links} "
        f"links + a text part ({run['render_mb']} MB of NDJSON read), bulk mark-sent ({CHUNK:,} ids per call).",
        "",
        "| step | seconds |",
        "|---|---:|",
        f"| import ({opts.contacts:,} contacts) | {run['import_s']} |",
        f"| render (first line after {run['render_first_line_s']} s) | {run['render_s']} |",
        f"| mark sent | {run['mark_sent_s']} |",
        f"| **end to end** | **{run['total_s']}** |",
        "",
        f"API calls: **{run['calls']}**. Render: **{run['render_contacts_per_s']:,} contacts/s**, "
        f"**{run['render_vs_baseline']}x** the baseline (the same client reading as many lines of the same size "
        f"from a bare ASGI app that does no work: {run['baseline_lines_per_s']:,} lines/s). "
        f"API RSS {run['rss_before_mb']} MB before the render, peak {run['rss_peak_mb']} MB while it streamed: "
        f"**+{run['rss_growth_mb']} MB**.",
        "",
        "| target | met |",
        "|---|---|",
        *[f"| {k} | {'yes' if v else 'no'} |" for k, v in targets.items()],
        "",
    ]
    (RESULTS / "sendprep-latest.md").write_text("\n".join(lines))
    (RESULTS / "sendprep-latest.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n".join(lines))
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
