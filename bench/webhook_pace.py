"""Webhooks under a live pixel load (issue #14): lag from pixel load to delivery, and what the
dispatcher costs the pixel path. Run through `python -m bench.webhook_bench --paced`.

In one run, on a fresh MariaDB database and a private redis-server:
1. the API as shipped with its stream consumer (`pixeltrack serve --no-sample --no-dispatcher`:
   the worker is started beside it as `serve` does by default) and `pixeltrack dispatcher` as a
   process of its own, exactly what `serve` starts beside the API (`start_child`); one webhook
   (every event type, machine events included) points at a receiver on loopback, in a process
   of its own (at nice 10: it stands in for another machine), that notes each event id and its lag: receipt time - the event's `occurred_at`
   (the time of the pixel load, microseconds);
2. paced: wrk holds `--rate` loads/s (bench/soak_load.lua) for `--duration` s, every load a new
   pixel (each one event); after the load, the receiver must have every event; lag p50/p99/max;
3. full load: unpaced wrk (bench/pixel_load.lua, 64 connections) for `--full-duration` s over
   fresh pixels, in `--rounds` rounds, the order of the legs rotated: with the dispatcher as
   shipped (WEBHOOK_DISPATCHER_NICE, default 19), without it, and with it at normal priority (WEBHOOK_DISPATCHER_NICE=0, to
   show what the priority buys); the dispatcher of a leg is running before the leg starts (as it
   is beside a live API: its own start is not part of a load), and the events it delivered during
   the leg are reported; between legs it catches up, unmeasured, so every leg creates as many
   events. The ratio of the medians is the dispatcher's cost to the pixel path.
Targets (issue #14): lag p99 ≤ 2 s at 1,000 loads/s; pixel throughput with the dispatcher
≥ 0.9x without. Results: bench/results/webhook-pace-latest.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import insert, select

from app.clients import sync_redis
from app.db import make_engine
from app.models import User, Webhook
from app.settings import Settings
from app.tracking.queue import STREAM
from app.tracking.tokens import TokenCodec
from app.webhooks import sequence, signing
from bench.pixel_bench import RESULTS, count_openings, log, run_wrk, seed
from bench.procstat import cpu_seconds, pids_of, tree_cpu
from bench.servers import PIXELTRACK, ROOT, PrivateRedis, free_port, fresh_database, production_env, stop, wait_healthy
from bench.soak import parse_wrk, start_wrk

CONNECTIONS = 64  # the pixel benchmark's full load
WITH, WITHOUT = "with dispatcher", "without dispatcher"
NICE_DEFAULT = Settings.model_fields["webhook_dispatcher_nice"].default
AT_NICE_0 = "with dispatcher at normal priority (WEBHOOK_DISPATCHER_NICE=0)"  # shown, not the target


class _Receiver(BaseHTTPRequestHandler):
    """POST: note every event's id and lag; GET: {"unique": n} or, on /lags, every lag (seconds)."""

    protocol_version = "HTTP/1.1"
    lock = threading.Lock()
    lags: dict[str, float] = {}
    posts = 0

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        now = time.time()
        with self.lock:
            _Receiver.posts += 1
            for event in body.get("data", []):
                at = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00")).timestamp()
                self.lags.setdefault(event["id"], now - at)
        self._answer(b"")

    def do_GET(self) -> None:
        with self.lock:
            doc = list(self.lags.values()) if self.path == "/lags" else {"unique": len(self.lags), "posts": self.posts}
        self._answer(json.dumps(doc).encode())

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


def _serve_receiver(port: int) -> None:
    # The receiver stands in for the customer's server, another machine: on this one it yields the
    # CPU to what is measured (the pixel path), as the dispatcher does (WEBHOOK_DISPATCHER_NICE).
    os.nice(10)
    ThreadingHTTPServer(("127.0.0.1", port), _Receiver).serve_forever()


def _get(port: int, path: str) -> Any:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
        return json.loads(reply.read())


def add_webhook(conn: Any, settings: Settings, owner_id: int, url: str, events: str) -> None:
    """A webhook as POST /api/v1/webhooks stores it (every class), starting at the outbox's end."""
    conn.execute(
        insert(Webhook).values(
            owner_id=owner_id,
            url=url,
            events=events,
            include_machine=True,
            secret=signing.seal(settings, signing.new_secret()),
            enabled=True,
            cursor_seq=sequence.last_seq(conn),
        )
    )


def _webhook(url: str, env: dict[str, str], receiver: int) -> None:
    """The seeded user's webhook to the receiver, for every event type."""
    settings = Settings(_env_file=None, database_url=url, fernet_key=env["FERNET_KEY"])
    engine = make_engine(url)
    with engine.begin() as conn:
        owner = conn.execute(select(User.id).where(User.username == "bench")).scalar_one()
        add_webhook(conn, settings, owner, f"http://127.0.0.1:{receiver}/hook", "open,click,conversion")
    engine.dispose()


def _wait_delivered(receiver: int, url: str, redis: Any, timeout: float) -> tuple[int, float]:
    """Once the worker has drained the stream: (events stored, seconds until the receiver holds
    every one of them); RuntimeError after `timeout`, or if it holds more (invented events)."""
    started = time.monotonic()
    while True:
        backlog = redis.xlen(STREAM)
        # Delivered before stored: stored only grows, so a count taken after the receiver's can
        # only be larger; read the other way round, events committed and delivered in between
        # looked invented (seen once: 29,566 delivered against 29,518 stored a moment before).
        got = _get(receiver, "/count")["unique"]
        stored = count_openings(url)[0]
        if got > stored:
            raise RuntimeError(f"{got:,} distinct events delivered, {stored:,} stored: invented events")
        if backlog == 0 and got == stored:
            return stored, time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{got:,} of {stored:,} events delivered after {timeout:.0f} s ({backlog:,} queued)")
        time.sleep(0.05)


class _Dispatcher:
    """`pixeltrack dispatcher` as `serve` starts it beside the API: started before a leg and
    measured once it is running (as in a deployment, where it starts with the API, not with a
    load: its start, ~1 CPU s of imports, is not what a load costs), stopped for the legs without it."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.nice: int | None = None

    def start(self, nice: int | None = None) -> None:
        """Running as configured (WEBHOOK_DISPATCHER_NICE, default 19), or at the `nice` given."""
        if self.proc is not None and nice != self.nice:
            self.stop()
        if self.proc is None:
            env = self.env if nice is None else {**self.env, "WEBHOOK_DISPATCHER_NICE": str(nice)}
            with self.log_path.open("wb") as out:
                self.proc = subprocess.Popen(
                    [PIXELTRACK, "dispatcher"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
                )
            self.nice = nice
            deadline = time.monotonic() + 60
            while b"dispatcher: delivering" not in self.log_path.read_bytes():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pixeltrack dispatcher did not start: {self.log_path}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


def _cpu(api: subprocess.Popen[bytes], dispatcher: _Dispatcher, receiver: int) -> dict[str, float]:
    """CPU seconds used so far: the API process, its stream consumer, the dispatcher, mariadbd
    (shared with whatever else uses the server), the receiver (pid `receiver`)."""
    api_tree = tree_cpu(api.pid)
    own = api_tree.pop(api.pid, 0.0)
    return {
        "api": own,
        "worker": sum(api_tree.values()),
        "dispatcher": sum(tree_cpu(dispatcher.proc.pid).values()) if dispatcher.proc is not None else 0.0,
        "mariadbd": sum(cpu_seconds(pid) for pid in pids_of("mariadbd")),
        "receiver": cpu_seconds(receiver),
    }


def _tokens(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def run(opts: argparse.Namespace) -> dict[str, Any]:
    fernet_key = Fernet.generate_key().decode()
    paced_n = opts.rate * opts.duration + opts.rate  # wrk may run a little over
    full_n = 25_000  # per full-load leg: more than one leg's first pass at ~6-10k loads/s
    url = fresh_database("pixeltrack_whpace")
    log(f"seeding {paced_n + full_n * 3 * opts.rounds:,} contacts and pixels ...")
    pixel_ids = seed(url, paced_n + full_n * 3 * opts.rounds)
    codec = TokenCodec([fernet_key])
    tokens = [codec.pixel_token(p) for p in pixel_ids]
    scratch = RESULTS / "tmp"
    redis = PrivateRedis()
    receiver = free_port()
    sink = multiprocessing.Process(target=_serve_receiver, args=(receiver,), daemon=True)
    sink.start()
    env = {
        **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        **production_env(url, redis.url, fernet_key),
        "LOG_LEVEL": "WARNING",
        "WEBHOOK_ALLOW_PRIVATE": "true",
    }
    _webhook(url, env, receiver)
    port = free_port()
    api_log = Path(tempfile.gettempdir()) / f"pixeltrack-whpace-{port}.log"
    api = subprocess.Popen(
        [PIXELTRACK, "serve", "--no-sample", "--no-dispatcher", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=api_log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    dispatcher = _Dispatcher(env, Path(tempfile.gettempdir()) / f"pixeltrack-whpace-dispatcher-{port}.log")
    result: dict[str, Any] = {}
    try:
        wait_healthy(port, api, "pixeltrack serve", log=api_log)
        dispatcher.start()
        queue = sync_redis(redis.url)
        log(f"paced: {opts.rate:,} new pixel loads/s for {opts.duration} s, the dispatcher delivering ...")
        paced_opts = argparse.Namespace(
            threads=1, connections=16, duration=opts.duration, rate=opts.rate, new_share=1.0
        )
        before = _cpu(api, dispatcher, sink.pid or 0)
        load = start_wrk(port, _tokens(scratch / "whpace-paced.txt", tokens[:paced_n]), paced_opts)
        out, _ = load.communicate(timeout=opts.duration + 120)
        after = _cpu(api, dispatcher, sink.pid or 0)
        paced = parse_wrk(out)
        stored, catch_up = _wait_delivered(receiver, url, queue, opts.drain_timeout)
        lags = sorted(_get(receiver, "/lags"))
        result["paced"] = {
            **{k: paced[k] for k in ("rps", "requests", "distinct", "p99_ms", "non_2xx", "socket_errors")},
            "events_stored": stored,
            "cpu_s": {k: round(after[k] - before[k], 2) for k in after},
            "events_delivered": len(lags),
            "catch_up_s": catch_up,
            "lag_p50_s": lags[len(lags) // 2],
            "lag_p99_s": lags[min(len(lags) - 1, int(len(lags) * 0.99))],
            "lag_max_s": lags[-1],
        }
        legs: dict[str, list[dict[str, Any]]] = {WITH: [], WITHOUT: [], AT_NICE_0: []}
        offset = paced_n
        for round_ in range(opts.rounds):
            order = list(legs)[round_ % 3 :] + list(legs)[: round_ % 3]
            for leg in order if round_ % 2 == 0 else reversed(order):
                if leg == WITHOUT:
                    dispatcher.stop()
                else:
                    dispatcher.start(0 if leg == AT_NICE_0 else None)
                log(f"full load, round {round_ + 1}, {leg} ...")
                leg_tokens = _tokens(scratch / "whpace-full.txt", tokens[offset : offset + full_n])
                offset += full_n
                before, delivered = _cpu(api, dispatcher, sink.pid or 0), _get(receiver, "/count")["unique"]
                figures = run_wrk(leg_tokens, opts.full_duration, CONNECTIONS, 2, port=port, settle=2)
                after = _cpu(api, dispatcher, sink.pid or 0)
                figures["cpu_s"] = {k: after[k] - before[k] for k in after if k != "dispatcher" or leg != WITHOUT}
                figures["delivered"] = _get(receiver, "/count")["unique"] - delivered
                if dispatcher.proc is None:
                    dispatcher.start()  # catch up before the next leg, unmeasured
                stored, figures["catch_up_s"] = _wait_delivered(receiver, url, queue, opts.drain_timeout)
                legs[leg].append(figures)
        result["full"] = {
            leg: {
                "rps": [r["rps"] for r in runs],
                "median_rps": statistics.median(r["rps"] for r in runs),
                "cpu_s": {k: statistics.median(r["cpu_s"][k] for r in runs) for k in runs[0]["cpu_s"]},
                "delivered": [r["delivered"] for r in runs],
                "catch_up_s": [round(r["catch_up_s"], 1) for r in runs],
            }
            for leg, runs in legs.items()
        }
        medians = {leg: figures["median_rps"] for leg, figures in result["full"].items()}
        result["full_ratio"] = medians[WITH] / medians[WITHOUT]
        result["full_ratio_nice_0"] = medians[AT_NICE_0] / medians[WITHOUT]
        # Each round's legs ran one after the other: their ratio is paired against drift in between.
        result["round_ratios"] = [w["rps"] / wo["rps"] for w, wo in zip(legs[WITH], legs[WITHOUT], strict=True)]
        result["events_delivered_total"] = stored
    finally:
        dispatcher.stop()
        stop(api)
        sink.terminate()
        redis.stop()
        for path in scratch.glob("whpace-*.txt"):
            path.unlink()
    return result


def report(opts: argparse.Namespace, result: dict[str, Any], load_before: float) -> str:
    paced, full = result["paced"], result["full"]
    lag_ok = paced["lag_p99_s"] <= 2.0
    ratio_ok = result["full_ratio"] >= 0.9
    lines = [
        "# Webhooks under a live pixel load (latest run)",
        "",
        f"{datetime.now(UTC).isoformat(timespec='seconds')} — {platform.machine()}, {os.cpu_count()} cores; "
        f"API `pixeltrack serve` (1 uvicorn worker + its stream consumer), `pixeltrack dispatcher` "
        f"(WEBHOOK_DISPATCHER_NICE={os.environ.get('WEBHOOK_DISPATCHER_NICE', f'{NICE_DEFAULT} (default)')}), MariaDB + "
        f"private Redis, receiver on loopback; load average {load_before:.1f} at start.",
        "",
        f"**Paced**: {paced['rps']:,.0f} loads/s for {opts.duration} s (target {opts.rate:,}), every load a new "
        f"pixel: {paced['events_stored']:,} events stored, {paced['events_delivered']:,} delivered (all caught up "
        f"{paced['catch_up_s']:.1f} s after the load), pixel p99 {paced['p99_ms']:.1f} ms, non-2xx "
        f"{paced['non_2xx']}. CPU s during the paced load: "
        f"{', '.join(f'{k} {v:.1f}' for k, v in paced['cpu_s'].items())}.",
        "",
        "| lag, pixel load → webhook received | seconds |",
        "|---|---:|",
        f"| p50 | {paced['lag_p50_s']:.3f} |",
        f"| **p99** | **{paced['lag_p99_s']:.3f}** |",
        f"| max | {paced['lag_max_s']:.3f} |",
        "",
        f"**Full load** (unpaced wrk, {CONNECTIONS} connections, {opts.full_duration} s per leg, fresh pixels each "
        f"leg, {opts.rounds} rounds, the legs in rotated order):",
        "",
        "| leg | loads/s per round | median | CPU s per leg (medians) | delivered during the leg | then caught up in (s) |",
        "|---|---|---:|---|---|---|",
        *(
            f"| {leg} | {', '.join(f'{r:,.0f}' for r in f['rps'])} | {f['median_rps']:,.0f} | "
            f"{', '.join(f'{k} {v:.1f}' for k, v in f['cpu_s'].items())} | "
            f"{', '.join(f'{d:,}' for d in f['delivered'])} | {', '.join(f'{c:.1f}' for c in f['catch_up_s'])} |"
            for leg, f in full.items()
        ),
        "",
        f"With the dispatcher as shipped: **{result['full_ratio']:.3f}x** the pixel throughput without it "
        f"(at normal priority: {result['full_ratio_nice_0']:.3f}x); round by round (the legs of a round "
        f"run back to back): {', '.join(f'{r:.3f}x' for r in result['round_ratios'])}. "
        f"{result['events_delivered_total']:,} events delivered in all, none missing, none invented.",
        "",
        "| target | met |",
        "|---|---|",
        f"| lag p99 ≤ 2 s at {opts.rate:,} loads/s | {'yes' if lag_ok else 'no'} |",
        f"| pixel throughput with the dispatcher ≥ 0.9x without | {'yes' if ratio_ok else 'no'} |",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paced", action="store_true", help=argparse.SUPPRESS)  # how webhook_bench hands over
    parser.add_argument("--rate", type=int, default=1000, help="paced pixel loads per second (default 1,000)")
    parser.add_argument("--duration", type=int, default=30, help="seconds of paced load (default 30)")
    parser.add_argument("--full-duration", type=int, default=10, help="seconds per full-load leg (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="full-load rounds, each with every leg (default 2)")
    parser.add_argument("--drain-timeout", type=float, default=120, help="max seconds for delivery to catch up")
    opts = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    result = run(opts)
    (RESULTS / "webhook-pace-latest.json").write_text(
        json.dumps({"options": vars(opts), "load_average": load_before, **result}, indent=2) + "\n"
    )
    text = report(opts, result, load_before)
    print(text)
    (RESULTS / "webhook-pace-latest.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
