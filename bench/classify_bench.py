"""Client classification accuracy and speed on public user-agent corpora installed from PyPI.

Usage:

    .venv/bin/pip install -e '.[bench]'        # fake-useragent (the other corpora come with the runtime data)
    .venv/bin/python -m bench.classify_bench [--strict]

Targets (issue #12, docs/classification.md), per corpus, never pooled:
- bot corpora: share called machine (bot, scanner, any proxy, apple_mpp) >= 95 %;
- real browser / mail-client corpora: share called bot or scanner <= 0.2 %.

Corpora (each printed with its package and version; every agent counted once):
- crawler-user-agents `instances` (the real agents each pattern must match): bots;
- Matomo Device Detector's bot fixtures (device_detector/tests/fixtures/upstream/bots.yml): bots;
- Matomo's device fixtures whose client is a browser or a mail client (type browser/pim): browsers;
- fake-useragent's browsers.jsonl (real browser agents weighted by traffic share): browsers;
- Matomo's device fixtures whose client is a mobile app: reported, not held to the browser
  target (many are apps' own HTTP clients: podcast feed fetchers, link-preview fetchers).
A corpus is *in-sample* when the classifier uses patterns from the same package: its figure
shows the data is wired in, not that it generalises. So each in-sample corpus is also scored with
that package's patterns left out (`held out`): the figure an unseen source would get.

Speed (CPU time, `time.process_time`: the machine is shared, wall clock is noisy): µs per
distinct agent uncached (the agent analysis called directly, first pass = cold RE2 automata,
second pass = warm) and cached (`classify` with its per-agent cache warm), and `first_pass`.

Writes bench/results/classify-latest.{md,json} and bench/results/classify-misses.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import yaml_rs

from app.models.tracking import MACHINE_CLIENTS, REASON_MAX, ClientKind
from app.tracking.classify import Verdict, agent_verdict, classify, clean_agent, data_versions, first_pass
from app.tracking.classify.patterns import Matchers, crawler_user_agents, matchers

RESULTS = Path(__file__).resolve().parent / "results"
BOT_TARGET, BROWSER_TARGET = 95.0, 0.2
BOTS, BROWSERS, APPS = "bots", "browsers", "apps"


@dataclass
class Corpus:
    name: str
    package: str
    kind: str  # BOTS, BROWSERS or APPS
    agents: list[str]
    in_sample: str | None  # the classifier's data source from this package ("matomo", ...)
    note: str = ""
    results: dict[str, Any] = field(default_factory=dict)


def _version(package: str) -> str:
    return metadata.version(package)


def _matomo_fixtures() -> tuple[list[str], dict[str, list[str]]]:
    """Matomo's bot fixtures, and its device fixtures' agents by client type."""
    root = resources.files("device_detector").joinpath("tests", "fixtures", "upstream")
    bots: list[str] = []
    by_type: dict[str, list[str]] = {}
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".yml"):
            continue
        cases = yaml_rs.loads(entry.read_text("utf-8"))
        for case in cases if isinstance(cases, list) else []:
            if not isinstance(case, dict) or not isinstance(case.get("user_agent"), str):
                continue
            if entry.name == "bots.yml":
                bots.append(case["user_agent"])
            else:
                client = case.get("client") or {}
                by_type.setdefault(str(client.get("type") or ""), []).append(case["user_agent"])
    return bots, by_type


def _fake_useragent() -> list[str]:
    path = resources.files("fake_useragent").joinpath("data", "browsers.jsonl")
    return [json.loads(line)["useragent"] for line in path.read_text("utf-8").splitlines() if line.strip()]


@cache
def load_corpora() -> list[Corpus]:
    def distinct(items: list[str]) -> list[str]:
        return list(dict.fromkeys(items))

    bots, by_type = _matomo_fixtures()
    dd = "device-detector"
    corpora = [
        Corpus(
            "crawler-user-agents instances",
            "crawler-user-agents",
            BOTS,
            distinct([i for entry in crawler_user_agents() for i in entry.get("instances", [])]),
            "crawler-user-agents",
        ),
        Corpus("Matomo bot fixtures (bots.yml)", dd, BOTS, distinct(bots), "matomo"),
        Corpus(
            "Matomo device fixtures: browsers + mail clients",
            dd,
            BROWSERS,
            distinct(by_type.get("browser", []) + by_type.get("pim", [])),
            "matomo",
            "Matomo's own bot patterns are tested upstream against these fixtures",
        ),
    ]
    try:
        corpora.append(
            Corpus("fake-useragent browsers.jsonl", "fake-useragent", BROWSERS, distinct(_fake_useragent()), None)
        )
    except ModuleNotFoundError:
        print("fake-useragent is not installed (pip install -e '.[bench]'): that corpus is skipped", file=sys.stderr)
    corpora.append(
        Corpus(
            "Matomo device fixtures: mobile apps",
            dd,
            APPS,
            distinct(by_type.get("mobile app", [])),
            "matomo",
            "apps' own HTTP clients (feed, podcast, link-preview fetchers) as well as in-app browsers: "
            "not held to the browser target",
        )
    )
    return corpora


def _score(corpus: Corpus, verdict_of: Callable[[str], Verdict]) -> tuple[dict[str, Any], list[str]]:
    classes: Counter[str] = Counter()
    misses: list[str] = []
    for agent in corpus.agents:
        verdict = verdict_of(agent)
        classes[verdict.client.value] += 1
        machine = verdict.client in MACHINE_CLIENTS
        wrong = not machine if corpus.kind == BOTS else verdict.client in (ClientKind.bot, ClientKind.scanner)
        if wrong:
            misses.append(f"{verdict.client.value}\t{verdict.reason}\t{agent}")
    total = len(corpus.agents)
    hits = sum(n for c, n in classes.items() if ClientKind(c) in MACHINE_CLIENTS)
    if corpus.kind != BOTS:
        hits = classes[ClientKind.bot.value] + classes[ClientKind.scanner.value]
    share = 100.0 * hits / total if total else 0.0
    return {"total": total, "count": hits, "percent": round(share, 3), "classes": dict(classes.most_common())}, misses


def _verdict_with(sources: Matchers) -> Callable[[str], Verdict]:
    def verdict(agent: str) -> Verdict:
        return agent_verdict(clean_agent(agent), sources)

    return verdict


def _met(corpus: Corpus, percent: float) -> bool | None:
    if corpus.kind == BOTS:
        return percent >= BOT_TARGET
    if corpus.kind == BROWSERS:
        return percent <= BROWSER_TARGET
    return None


def _timings(agents: list[str]) -> dict[str, float]:
    sources = matchers()
    cleaned = [clean_agent(a) for a in agents]
    out: dict[str, float] = {"agents": len(agents)}
    for label in ("uncached_cold_us", "uncached_warm_us"):
        start = time.process_time()
        for agent in cleaned:
            agent_verdict(agent, sources)
        out[label] = round(1e6 * (time.process_time() - start) / len(cleaned), 2)
    # Cached: typical traffic has few distinct agents (well inside the 16,384-entry cache).
    few = agents[:: max(1, len(agents) // 2000)]
    for agent in few:
        classify(agent, "198.51.100.7")
    start = time.process_time()
    for _ in range(10):
        for agent in few:
            classify(agent, "198.51.100.7")
    out["cached_us"] = round(1e6 * (time.process_time() - start) / (10 * len(few)), 2)
    start = time.process_time()
    for agent in agents:
        first_pass(agent)
    out["first_pass_us"] = round(1e6 * (time.process_time() - start) / len(agents), 2)
    return out


def run(strict: bool) -> int:
    start = time.process_time()
    matchers()
    build_s = time.process_time() - start
    corpora = load_corpora()
    versions = data_versions()
    print("data sources:", ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"matchers built in {build_s:.2f} s CPU\n")
    # Timed first, so that "cold" means automata that have matched nothing yet.
    timing = _timings(list(dict.fromkeys(a for c in corpora for a in c.agents)))
    misses_out: list[str] = []
    all_met = True
    for corpus in corpora:
        corpus.results, misses = _score(corpus, _verdict_with(matchers()))
        if corpus.in_sample:
            corpus.results["held_out"], _ = _score(corpus, _verdict_with(matchers(frozenset({corpus.in_sample}))))
        met = _met(corpus, corpus.results["percent"])
        corpus.results["target_met"] = met
        all_met = all_met and met is not False
        what = "called machine" if corpus.kind == BOTS else "called bot/scanner"
        sample = f"in-sample ({corpus.in_sample} patterns)" if corpus.in_sample else "independent"
        print(f"{corpus.name} [{corpus.package} {_version(corpus.package)}, {sample}]")
        print(
            f"  {what}: {corpus.results['count']}/{corpus.results['total']} = {corpus.results['percent']:.2f} %", end=""
        )
        print("" if met is None else f"  target {'met' if met else 'MISSED'}")
        if "held_out" in corpus.results:
            held_out = corpus.results["held_out"]
            print(
                f"  held out ({corpus.in_sample} left out): {held_out['count']}/{held_out['total']} = {held_out['percent']:.2f} %"
            )
        print(f"  classes: {corpus.results['classes']}")
        misses_out += [f"## {corpus.name} ({what if corpus.kind != BOTS else 'not called machine'}): {len(misses)}"]
        misses_out += [*misses, ""]
    print(
        f"\nµs per agent (CPU, {timing['agents']:.0f} distinct agents): uncached cold {timing['uncached_cold_us']}, "
        f"uncached warm {timing['uncached_warm_us']}, cached {timing['cached_us']}; first_pass {timing['first_pass_us']}"
    )
    print(f"targets met on every corpus: {'yes' if all_met else 'NO'}")
    _write(corpora, versions, timing, build_s, misses_out, all_met)
    return 1 if strict and not all_met else 0


def _write(
    corpora: list[Corpus],
    versions: dict[str, str],
    timing: dict[str, float],
    build_s: float,
    misses: list[str],
    all_met: bool,
) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "classify-misses.txt").write_text(
        "# Misclassified agents per corpus (class, reason, agent), from bench/classify_bench.py\n\n"
        + "\n".join(misses)
        + "\n",
        "utf-8",
    )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    data = {
        "when": stamp,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "versions": versions,
        "targets": {"bots_machine_min_percent": BOT_TARGET, "browsers_bot_max_percent": BROWSER_TARGET},
        "all_targets_met": all_met,
        "corpora": [
            {
                "name": c.name,
                "package": c.package,
                "version": _version(c.package),
                "kind": c.kind,
                "in_sample": c.in_sample,
                "note": c.note,
                **c.results,
            }
            for c in corpora
        ],
        "timing_us": timing,
        "build_s": round(build_s, 3),
        "reason_max": REASON_MAX,
    }
    (RESULTS / "classify-latest.json").write_text(json.dumps(data, indent=2) + "\n", "utf-8")
    lines = [
        "# Client classification benchmark (latest run)",
        "",
        f"{stamp} · {data['machine']} · `.venv/bin/python -m bench.classify_bench`",
        "",
        "Data: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
        "| corpus | package | agents | target | measured | held out | target met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in corpora:
        r = c.results
        target = f"machine ≥ {BOT_TARGET:g} %" if c.kind == BOTS else f"bot/scanner ≤ {BROWSER_TARGET:g} %"
        if c.kind == APPS:
            target = "(reported only)"
        held = (
            f"{r['held_out']['count']}/{r['held_out']['total']} = {r['held_out']['percent']:.2f} %"
            if "held_out" in r
            else "independent"
        )
        met = {True: "yes", False: "**no**", None: "n/a"}[r["target_met"]]
        lines.append(
            f"| {c.name} | {c.package} {_version(c.package)} | {r['total']} | {target} | "
            f"{r['count']}/{r['total']} = {r['percent']:.2f} % | {held} | {met} |"
        )
    lines += [
        "",
        "*held out*: the same corpus with the classifier's patterns from the corpus's own package left out",
        "(what an unseen source would get). Misclassified agents: [classify-misses.txt](classify-misses.txt).",
        "",
        f"Speed (CPU time per distinct agent, {timing['agents']} agents): uncached {timing['uncached_cold_us']} µs "
        f"(cold automata), {timing['uncached_warm_us']} µs (warm); cached {timing['cached_us']} µs; "
        f"`first_pass` {timing['first_pass_us']} µs. Data loaded and compiled once in {build_s:.2f} s.",
        "",
    ]
    (RESULTS / "classify-latest.md").write_text("\n".join(lines), "utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strict", action="store_true", help="exit 1 when a corpus misses its target")
    return run(parser.parse_args().strict)


if __name__ == "__main__":
    sys.exit(main())
