"""User-agent pattern data from maintained, versioned packages (none of it is ours).

- `crawler-user-agents` (monperrus/crawler-user-agents): ~700 crawler/bot/HTTP-library patterns,
  each with the real agents it must match (`instances`); matched case-sensitively, as the
  project's own `is_crawler` does.
- `device-detector` (the Python port of Matomo's Device Detector) ships Matomo's regex data; we
  read four of its files and not its parser (3-15 ms per agent, too slow for the worker):
  `bots.yml` (crawlers, monitors, scanners, proxies), `client/libraries.yml` (HTTP libraries),
  `client/pim.yml` (mail clients) and `client/browser_engine.yml` (rendering engines). Matomo
  matches each pattern case-insensitively behind a word boundary (`settings.BOUNDED_REGEX`).
- `ua-parser` + `ua-parser-builtins` (uap-core's regexes, with the native `ua-parser-rs`
  resolver): device family "Spider" marks a crawler.

Speed: the big lists are compiled into one RE2 automaton per list (google-re2: linear time,
no backtracking), a few µs per agent; the handful of Matomo patterns RE2 cannot run
(look-arounds) go through the `regex` module, which speaks Matomo's PCRE dialect. Everything is
built once, on the first call (`matchers()`), never on the request path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from importlib import metadata, resources
from typing import Any

# re2, regex, yaml_rs and ua_parser are imported where used: the request path imports this
# package (for `first_pass`) and must not pay for them.

# Matomo: "Only match if useragent begins with given regex or there is no letter before it"
# (device_detector/settings.py BOUNDED_REGEX, the same as upstream's AbstractParser).
_BOUNDED = r"(?:^|[^A-Z0-9_-]|[^A-Z0-9-]_|sprd-|MZ-)(?:{})"
_LOOKAROUND = re.compile(r"\(\?<?[=!]")  # RE2 has no look-around: those go to `regex`

PACKAGES = ("crawler-user-agents", "device-detector", "ua-parser", "ua-parser-builtins", "google-re2")


def data_versions() -> dict[str, str]:
    """The installed version of each data package (printed by the benchmark, pinned in pyproject)."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - a broken install
            found[name] = "missing"
    return found


Search = Callable[[str], bool]


def _never(_: str) -> bool:
    return False


def compile_any(patterns: Iterable[str], *, ignore_case: bool, bounded: bool = False) -> Search:
    """One search function for "does any of these patterns match": RE2 for the patterns it can
    run, `regex` (PCRE-like) for the rest. Invalid patterns are dropped, never raised."""
    import re2
    import regex

    fast: list[str] = []
    slow: list[Callable[[str], object]] = []
    options = re2.Options()
    options.case_sensitive = not ignore_case
    options.log_errors = False
    options.max_mem = 64 << 20  # room for a large DFA: the lists are matched as one automaton
    options.never_capture = True  # a yes/no answer: no submatch extraction, the DFA alone
    for pattern in patterns:
        wrapped = _BOUNDED.format(pattern) if bounded else pattern
        if not _LOOKAROUND.search(pattern):
            try:
                re2.compile(wrapped, options)
            except re2.error:
                pass
            else:
                fast.append(pattern)
                continue
        try:
            exact = regex.compile(wrapped, regex.IGNORECASE if ignore_case else 0)
        except regex.error:
            continue
        slow.append(_prefiltered(exact, _without_lookaround(wrapped), options))
    searches: list[Callable[[str], object]] = []
    if fast:
        joined = "|".join(f"(?:{p})" for p in fast)
        try:
            searches.append(re2.compile(_BOUNDED.format(joined) if bounded else joined, options).search)
        except re2.error:  # pragma: no cover - an automaton over RE2's memory budget: one per pattern
            searches += [re2.compile(_BOUNDED.format(p) if bounded else p, options).search for p in fast]
    searches += slow
    if not searches:
        return _never

    def search(text: str) -> bool:
        return any(s(text) is not None for s in searches)

    return search


def _without_lookaround(pattern: str) -> str:
    """`pattern` with its look-around groups removed: a looser pattern (it matches wherever the
    original does) that RE2 can run as a fast prefilter."""
    out, i = [], 0
    while i < len(pattern):
        if _LOOKAROUND.match(pattern, i):
            depth, i = 0, i
            while i < len(pattern):
                if pattern[i] == "\\":
                    i += 2
                    continue
                depth += {"(": 1, ")": -1}.get(pattern[i], 0)
                i += 1
                if depth == 0:
                    break
            continue
        if pattern[i] == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        out.append(pattern[i])
        i += 1
    return "".join(out)


def _prefiltered(exact: Any, loose: str, options: Any) -> Callable[[str], object]:
    """`exact.search`, run only where the look-around-free `loose` pattern (RE2) matches."""
    import re2

    try:
        prefilter = re2.compile(loose, options)
    except re2.error:
        return exact.search  # type: ignore[no-any-return]

    def search(text: str) -> object:
        return exact.search(text) if prefilter.search(text) is not None else None

    return search


def _matomo_file(path: str) -> list[dict[str, Any]]:
    import yaml_rs

    text = resources.files("device_detector").joinpath("regexes", "upstream", *path.split("/")).read_text("utf-8")
    loaded = yaml_rs.loads(text)
    if not isinstance(loaded, list):
        return []
    return [entry for entry in loaded if isinstance(entry, dict) and isinstance(entry.get("regex"), str)]


def _matomo(path: str) -> list[str]:
    return [entry["regex"] for entry in _matomo_file(path)]


def crawler_user_agents() -> list[dict[str, Any]]:
    """crawler-user-agents' entries: `pattern`, `instances` (the bench's corpus), `tags`, ..."""
    text = resources.files("crawleruseragents").joinpath("crawler-user-agents.json").read_text("utf-8")
    data: list[dict[str, Any]] = json.loads(text)
    return data


@dataclass(frozen=True)
class Matchers:
    """The data sources, one search function each (`sources` lets the benchmark leave one out)."""

    matomo_bot: Search
    matomo_library: Search
    uap_spider: Search
    crawler: Search
    mail_client: Search
    engine: Search


def _uap_spider() -> Search:
    import ua_parser

    parser = ua_parser.Parser(ua_parser.BestAvailableResolver(ua_parser.load_builtins()))

    def spider(text: str) -> bool:
        device = parser.parse_device(text)
        return device is not None and device.family == "Spider"

    return spider


@cache
def matchers(without: frozenset[str] = frozenset()) -> Matchers:
    """Build (once) the matchers; `without` names sources to leave out (the benchmark's
    leave-one-source-out figures): "crawler-user-agents", "matomo", "uap"."""
    matomo = "matomo" not in without
    return Matchers(
        matomo_bot=compile_any(_matomo("bots.yml"), ignore_case=True, bounded=True) if matomo else _never,
        matomo_library=compile_any(_matomo("client/libraries.yml"), ignore_case=True, bounded=True)
        if matomo
        else _never,
        uap_spider=_uap_spider() if "uap" not in without else _never,
        crawler=compile_any((e["pattern"] for e in crawler_user_agents()), ignore_case=False)
        if "crawler-user-agents" not in without
        else _never,
        # Mail clients and rendering engines only ever say "browser": never left out.
        mail_client=compile_any(_matomo("client/pim.yml"), ignore_case=True, bounded=True),
        engine=compile_any(_matomo("client/browser_engine.yml"), ignore_case=True, bounded=True),
    )
