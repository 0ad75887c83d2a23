"""Client classification (app/tracking/classify/): the email rules, package data, addresses, bad input.

Pure logic, no database. The corpus samples at the end fail when a data update (a pin bump of
crawler-user-agents, device-detector or ua-parser-builtins) breaks accuracy; the full figures
are bench/classify_bench.py's.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.models import ClientKind
from app.models.tracking import MACHINE_CLIENTS, REASON_MAX
from app.tracking.classify import REASONS, UA_MAX, Verdict, classify, classify_by_class, first_pass, ip_class, networks
from app.tracking.classify.networks import parse_ip, parse_ranges, scanner_ranges
from app.tracking.classify.patterns import data_versions, matchers

ROOT = Path(__file__).resolve().parent.parent
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
K = ClientKind

# (user agent, ip, method, Purpose header, expected class, expected reason)
CASES = [
    # Apple Mail Privacy Protection: the bare agent, or Apple's network behind a browser agent.
    ("Mozilla/5.0", None, "GET", None, K.apple_mpp, "ua:apple-mpp"),
    (" Mozilla/5.0 ", "203.0.113.9", "GET", None, K.apple_mpp, "ua:apple-mpp"),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15",
        "17.58.101.12",
        "GET",
        None,
        K.apple_mpp,
        "ip:apple",
    ),
    (None, "17.58.101.12", "GET", None, K.apple_mpp, "ip:apple"),
    (CHROME, "::ffff:17.1.2.3", "GET", None, K.apple_mpp, "ip:apple"),
    # Mailbox providers' image proxies.
    (
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
        "66.249.84.40",
        "GET",
        None,
        K.gmail_proxy,
        "ua:gmail-proxy",
    ),
    (
        "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
        "98.136.0.1",
        "GET",
        None,
        K.yahoo_proxy,
        "ua:yahoo-proxy",
    ),
    ("Mozilla/5.0 (compatible; OutlookImageProxy/1.0)", None, "GET", None, K.outlook_proxy, "ua:outlook-proxy"),
    ("Mozilla/5.0 SeznamEmailProxy/2.0.174", None, "GET", None, K.other_proxy, "ua:mail-proxy"),
    ("RamblerMail/6.0 (incompatible; ImageProxy/6.0)", None, "GET", None, K.other_proxy, "ua:mail-proxy"),
    (f"{CHROME} (via secureurl.fwdcdn.com - mail.ukr.net proxy)", None, "GET", None, K.other_proxy, "ua:mail-proxy"),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.5993.117 Safari/537.36 FastmailUA/1.0",
        None,
        "GET",
        None,
        K.other_proxy,
        "ua:mail-proxy",
    ),
    (
        "hey.com/imageproxy Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/134.0.0.0 Safari/537.36",
        None,
        "GET",
        None,
        K.other_proxy,
        "ua:mail-proxy",
    ),
    ("Mozilla/5.0 (compatible; Shortwave Image Fetcher)", None, "GET", None, K.other_proxy, "ua:mail-proxy"),
    # A proxy names itself: that wins over a scanner range.
    ("Mozilla/5.0 SeznamEmailProxy/2.0.174", "40.107.1.1", "GET", None, K.other_proxy, "ua:mail-proxy"),
    # Link scanners and security gateways: by agent, or by published range whatever the agent.
    ("Barracuda Sentinel (EE)", None, "GET", None, K.scanner, "ua:link-scanner"),
    (
        f"{CHROME} (compatible; Google-Safety; +http://www.google.com/bot.html)",
        None,
        "GET",
        None,
        K.scanner,
        "ua:link-scanner",
    ),
    (
        "AppEngine-Google; (+http://code.google.com/appengine; appid: s~virustotalcloud)",
        None,
        "GET",
        None,
        K.scanner,
        "ua:link-scanner",
    ),
    ("Kaspersky Lab CFR link resolver cfradmins@kaspersky.com", None, "GET", None, K.scanner, "ua:link-scanner"),
    (CHROME, "40.107.22.33", "GET", None, K.scanner, "ip:scanner-range"),
    (CHROME, "104.47.1.254", "GET", None, K.scanner, "ip:scanner-range"),
    (CHROME, "2a01:111:f400::1", "GET", None, K.scanner, "ip:scanner-range"),
    (CHROME, "::ffff:40.92.7.7", "GET", None, K.scanner, "ip:scanner-range"),
    ("", "209.222.83.1", "GET", None, K.scanner, "ip:scanner-range"),
    (GOOGLEBOT, "52.101.0.1", "GET", None, K.scanner, "ip:scanner-range"),
    (CHROME, "40.106.255.255", "GET", None, K.browser, "ua:browser-engine"),  # next to 40.107.0.0/16
    # The request itself: HEAD and prefetch hints.
    (CHROME, "203.0.113.9", "HEAD", None, K.bot, "method:HEAD"),
    (CHROME, "203.0.113.9", "head", None, K.bot, "method:HEAD"),
    (CHROME, "203.0.113.9", "GET", "prefetch", K.bot, "header:prefetch"),
    (CHROME, "203.0.113.9", "GET", "Prefetch;prerender", K.bot, "header:prefetch"),
    # Bots, from each data source.
    (GOOGLEBOT, None, "GET", None, K.bot, "ua:matomo-bot"),
    (
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        None,
        "GET",
        None,
        K.bot,
        "ua:matomo-bot",
    ),
    ("curl/8.5.0", None, "GET", None, K.bot, "ua:matomo-library"),
    ("python-requests/2.32.3", None, "GET", None, K.bot, "ua:matomo-library"),
    ("Go-http-client/1.1", None, "GET", None, K.bot, "ua:matomo-library"),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
        None,
        "GET",
        None,
        K.bot,
        "ua:crawler-user-agents",
    ),
    # Browsers, and the old list's false positives: a phone model named CUBOT, "San Francisco"
    # (the old `cisco`), Lynx with libwww-FM (the old `libwww`).
    (CHROME, "203.0.113.9", "GET", None, K.browser, "ua:browser-engine"),
    (
        "Mozilla/5.0 (Linux; Android 10; CUBOT X19) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/96.0.4664.45 Mobile Safari/537.36",
        None,
        "GET",
        None,
        K.browser,
        "ua:browser-engine",
    ),
    (
        "Mozilla/5.0 (Linux; Android 9; CUBOT_P30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/83.0.4103.106 Mobile Safari/537.36",
        None,
        "GET",
        None,
        K.browser,
        "ua:browser-engine",
    ),
    (f"{CHROME} San Francisco", None, "GET", None, K.browser, "ua:browser-engine"),
    ("Lynx/2.8.9rel.1 libwww-FM/2.14 SSL-MM/1.4.1 OpenSSL/1.1.1d", None, "GET", None, K.unknown, "ua:unrecognised"),
    # Nothing to go on.
    ("", "198.51.100.7", "GET", None, K.unknown, "ua:missing"),
    (None, None, "GET", None, K.unknown, "ua:missing"),
    ("   ", "10.0.0.1", "GET", None, K.unknown, "ua:missing"),
    ("SomethingElse/1.0", "198.51.100.8", "GET", None, K.unknown, "ua:unrecognised"),
]


@pytest.mark.parametrize(("ua", "ip", "method", "purpose", "client", "reason"), CASES)
def test_classification(
    ua: str | None, ip: str | None, method: str, purpose: str | None, client: ClientKind, reason: str
) -> None:
    assert classify(ua, ip, method=method, purpose=purpose) == Verdict(client, reason)


# Mail clients load images from the device: a person reading, so `browser`.
MAIL_CLIENTS = [
    # New Outlook for Mac and Apple Mail (macOS, iOS): WebKit without "Safari/".
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "MacOutlook/16.77.23091003 (Intel Mac OS X Version 13.5.2 (Build 22G91))",
    # Outlook 2007 (Word renders mail), Outlook 2016+ on Windows, Outlook mobile.
    "Microsoft Office/12.0 (Windows NT 6.1; Microsoft Outlook 12.0.6739; Pro; MSOffice 12)",
    "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.1; Trident/7.0; Microsoft Outlook 12.0.6739; ms-office; MSOffice 12)",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
    "Outlook-iOS/709.2189947.prod.iphone (3.24.0)",
    "Outlook-Android/2.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.3.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.9.0",
    # Windows Mail (Edge WebView), Android mail apps (WebView), Postbox, The Bat!, eM Client.
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; WebView/3.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.19045",
    "Mozilla/5.0 (Linux; Android 13; SM-S911B Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/119.0.6045.163 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; U; Intel Mac OS X 10.5; en-US; rv:1.9.1.8) Gecko/20100317 Postbox/1.1.3",
    "The Bat! 9.5.3",
    "eM Client/9.2.2038.0",
]


@pytest.mark.parametrize("ua", MAIL_CLIENTS)
def test_mail_clients_are_browsers(ua: str) -> None:
    assert classify(ua, "198.51.100.20").client is K.browser


def test_reasons_are_listed_short_and_documented() -> None:
    assert all(len(reason) <= REASON_MAX for reason in REASONS)
    assert {reason for *_, reason in CASES} <= set(REASONS)
    doc = (ROOT / "docs" / "classification.md").read_text(encoding="utf-8")
    assert [r for r in REASONS if f"`{r}`" not in doc] == []


# --- addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("17.0.0.1", "apple"),
        ("::ffff:17.255.255.254", "apple"),
        ("40.92.0.1", "scanner"),
        ("40.93.255.255", "scanner"),
        ("40.94.0.0", ""),
        ("2a01:111:f403:ffff::9", "scanner"),
        ("2a01:111:f402::1", ""),
        ("fe80::1%eth0", ""),
        ("::ffff:10.1.2.3", ""),
        ("10.1.2.3", ""),
        ("192.168.0.1", ""),
        ("127.0.0.1", ""),
        ("::1", ""),
        ("203.0.113.77", ""),  # documentation range: not global
        ("8.8.8.8", ""),
        ("not-an-ip", ""),
        ("", ""),
        (None, ""),
        ("999.1.1.1", ""),
        ("1.2.3.4.5", ""),
        ("::ffff:999.1.1.1", ""),
        ("17.0.0.1\x00", ""),
        ("x" * 10_000, ""),
        ("🙂", ""),
    ],
)
def test_ip_class(ip: str | None, expected: str) -> None:
    assert ip_class(ip) == expected


def test_the_ipv4_fast_path_agrees_with_the_full_parse() -> None:
    """`ip_class` answers dotted IPv4 outside both ranges from the integer alone: for addresses in
    and around every range (and odd spellings), the answer is the full parse's."""
    rng = random.Random(12)
    samples = ["17.0.0.0", "16.255.255.255", "17.255.255.255", "18.0.0.0", "017.1.2.3", "17.1.2.03", "0.0.0.0"]  # noqa: S104 (an input, not a bind)
    for start, end in zip(scanner_ranges()[4].starts, scanner_ranges()[4].ends, strict=True):
        for number in (start - 1, start, (start + end) // 2, end, end + 1):
            if 0 <= number < 2**32:
                samples.append(".".join(str(number >> shift & 255) for shift in (24, 16, 8, 0)))
    samples += [".".join(str(rng.randrange(256)) for _ in range(4)) for _ in range(2000)]
    for ip in samples:
        assert ip_class(ip) == networks._ip_class(ip), ip


def test_parse_ip_unwraps_mapped_and_rejects_other_types() -> None:
    assert str(parse_ip("::ffff:203.0.113.7")) == "203.0.113.7"
    assert str(parse_ip(b"2001:db8::1")) == "2001:db8::1"
    assert parse_ip(12345) is None
    assert parse_ip(["17.0.0.1"]) is None


def test_scanner_ranges_file_parses_and_cites_a_source_for_every_block() -> None:
    text = (ROOT / "app" / "tracking" / "data" / "scanner_ranges.txt").read_text(encoding="utf-8")
    ranges = scanner_ranges()
    assert ranges[4].starts
    assert ranges[6].starts
    for block in re.split(r"\n\s*\n", text):
        entries = [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if entries:
            assert re.search(r"#.*Sources?: https://", block), block


def test_parse_ranges_merges_overlaps_and_rejects_bad_lines() -> None:
    ranges = parse_ranges("10.0.0.0/24 a\n10.0.0.128/25 b # inside\n10.0.1.0/24 c\n# comment\n\n2001:db8::/32 d")
    assert (ranges[4].starts, ranges[4].ends) == ([0x0A000000], [0x0A0001FF])
    assert 0x0A000100 in ranges[4]
    assert 0x0A000200 not in ranges[4]
    with pytest.raises(ValueError, match=r"scanner_ranges\.txt:2"):
        parse_ranges("10.0.0.0/24\n10.0.0.1/24\n")


# --- bad input and edges ------------------------------------------------------------------------


def test_agents_are_cut_at_ua_max_before_matching() -> None:
    assert UA_MAX == 512
    hidden = " " * UA_MAX + "Googlebot/2.1"
    assert classify(hidden).client is not K.bot
    assert classify(" " * (UA_MAX - 20) + "Googlebot/2.1").client is K.bot
    assert classify("x" * 1_000_000).client is K.unknown


@pytest.mark.parametrize(
    "ua",
    ["\x00", "\x00" * 600, "\ud800", "a\udfffb" * 200, "💥" * 1000, "é" * 513, "Mozilla/5.0\x00", "\r\n\t", "%00%ff"],
)
def test_odd_agents_never_raise(ua: str) -> None:
    verdict = classify(ua, "::ffff:17.0.0.1")
    assert isinstance(verdict.client, ClientKind)
    assert verdict.reason in REASONS


def test_fuzzed_input_always_gets_a_verdict() -> None:
    rng = random.Random(12)
    for _ in range(400):
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 700)))
        texts = [
            raw.decode("latin-1"),
            raw.decode("utf-8", "surrogateescape"),
            "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randrange(40))),
        ]
        for text in texts:
            for ip in (text[:40], "::ffff:" + text[:8], None):
                verdict = classify(text, ip, method=text[:5], purpose=text[:9])
                assert verdict.reason in REASONS
                first_pass(text, method=text[:5], purpose=text[:9])
    assert classify(b"curl/8.0", b"17.0.0.1").client is K.bot  # type: ignore[arg-type]
    assert classify(CHROME, ["17.0.0.1"], method=None, purpose=3) == Verdict(K.browser, "ua:browser-engine")  # type: ignore[arg-type]
    assert first_pass(CHROME, method=None, purpose=b"prefetch") is False  # type: ignore[arg-type]


@pytest.mark.parametrize(("ua", "ip"), [(ua, ip) for ua, ip, method, *_ in CASES if method == "GET"])
def test_classify_by_class_gives_the_same_verdict(ua: str | None, ip: str | None) -> None:
    assert classify_by_class(ua, ip_class(ip)) == classify(ua, ip)


# --- first pass ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ua", "method", "purpose", "machine"),
    [
        (CHROME, "HEAD", None, True),
        (CHROME, "GET", "prefetch", True),
        (CHROME, "GET", "prefetch;prerender", True),
        (None, "GET", "PREFETCH", True),
        ("Mozilla/5.0", "GET", None, True),
        (
            "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
            "GET",
            None,
            True,
        ),
        ("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", "GET", None, True),
        ("Mozilla/5.0 SeznamEmailProxy/2.0.174", "GET", None, True),
        ("Barracuda Sentinel (EE)", "GET", None, True),
        (CHROME, "GET", None, False),
        (CHROME, "GET", "prerender", False),
        (GOOGLEBOT, "GET", None, False),  # a crawler is the worker's to find: not on the short list
        (None, "GET", None, False),
        ("", "GET", None, False),
        (" " * UA_MAX + "GoogleImageProxy", "GET", None, False),
    ],
)
def test_first_pass(ua: str | None, method: str, purpose: str | None, machine: bool) -> None:
    assert first_pass(ua, method=method, purpose=purpose) is machine


def test_first_pass_agrees_with_the_proxy_and_scanner_classes() -> None:
    for ua, _, method, purpose, client, reason in CASES:
        if reason.startswith(("ua:", "method:", "header:")) and client is not K.bot and client in MACHINE_CLIENTS:
            assert first_pass(ua, method=method, purpose=purpose), ua


def test_first_pass_is_cheap_and_loads_no_package_data() -> None:
    script = (
        "import sys; from app.tracking.classify import first_pass; "
        f"assert first_pass('Mozilla/5.0 SeznamEmailProxy/2.0') and not first_pass({CHROME!r}); "
        "print(sorted(m for m in ('re2', 'regex', 'ua_parser', 'yaml_rs', 'crawleruseragents') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
    long = CHROME + " x" * 200
    start = time.process_time()
    for _ in range(20_000):
        first_pass(long)
    assert (time.process_time() - start) / 20_000 < 50e-6  # ~1 µs measured; 50 µs leaves room for a busy machine


# --- data sources and corpus samples -------------------------------------------------------------


def test_data_versions_are_installed_and_pinned_from_below() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for package, version in data_versions().items():
        assert version != "missing", package
        assert re.search(rf'"{re.escape(package)}(\[\w+\])?>=', pyproject), package


def test_leaving_a_source_out_changes_only_its_verdicts() -> None:
    from app.tracking.classify import agent_verdict

    headless = (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36"
    )
    assert agent_verdict(headless, matchers()).client is K.bot
    assert agent_verdict(headless, matchers(frozenset({"crawler-user-agents"}))).reason == "ua:browser-engine"
    assert agent_verdict(GOOGLEBOT, matchers(frozenset({"matomo"}))).client is K.bot  # the others know Googlebot


def _corpora() -> dict[str, list[str]]:
    from bench.classify_bench import load_corpora

    return {corpus.name: corpus.agents for corpus in load_corpora()}


@pytest.mark.slow  # every agent of each corpus (tens of thousands): seconds
@pytest.mark.parametrize(
    ("corpus", "kind"),
    [
        ("crawler-user-agents instances", "bots"),
        ("Matomo bot fixtures (bots.yml)", "bots"),
        ("Matomo device fixtures: browsers + mail clients", "browsers"),
        ("fake-useragent browsers.jsonl", "browsers"),
    ],
)
def test_corpus_meets_the_targets(corpus: str, kind: str) -> None:
    """Each whole corpus, as bench/classify_bench.py scores it (a second or two): bots called
    machine >= 95 %, browsers and mail clients called bot/scanner <= 0.2 %."""
    corpora = _corpora()
    if corpus not in corpora:
        pytest.skip(f"{corpus}: its package is not installed (pip install -e '.[bench]')")
    sample = corpora[corpus]
    assert len(sample) >= 500
    verdicts = [classify(ua).client for ua in sample]
    if kind == "bots":
        assert sum(v in MACHINE_CLIENTS for v in verdicts) / len(sample) >= 0.95
    else:
        wrong = [ua for ua, v in zip(sample, verdicts, strict=True) if v in (K.bot, K.scanner)]
        assert len(wrong) / len(sample) <= 0.002, wrong[:20]


# One real agent from each corpus per class it has: a data update that moves one fails here.
CORPUS_EXAMPLES = [
    ("Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)", K.bot),  # crawler-user-agents
    ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", K.bot),
    ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", K.bot),
    ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", K.bot),
    ("okhttp/4.9.0", K.bot),
    ("Wget/1.21.3", K.bot),
    ("monitoring360bot/1.1", K.bot),  # Matomo bots.yml
    ("360Spider-Image", K.bot),
    (
        "Mozilla/5.0 (compatible; Yahoo Link Preview; https://help.yahoo.com/kb/mail/yahoo-link-preview-SLN23615.html)",
        K.bot,
    ),
    ("Chrome Privacy Preserving Prefetch Proxy", K.bot),
    ("Mozilla/6.0 (Macintosh; U; Amiga-AWeb) Safari 3.1", K.unknown),  # Matomo desktop.yml
    ("Mozilla/5.0 (AmigaOS; U; AmigaOS 1.3; en-US; rv:1.8.1.21) Gecko/20090303 SeaMonkey/1.1.15", K.browser),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_3_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.3.1 Mobile/15E148 Safari/604.1",
        K.browser,
    ),  # fake-useragent
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/134.0.0.0 Safari/537.36 Edg/134.0.0.0",
        K.browser,
    ),
    ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:136.0) Gecko/20100101 Firefox/136.0", K.browser),
]


@pytest.mark.parametrize(("ua", "client"), CORPUS_EXAMPLES)
def test_corpus_examples(ua: str, client: ClientKind) -> None:
    assert classify(ua, "198.51.100.30").client is client
