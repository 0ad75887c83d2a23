"""The email-specific rules: the only classification knowledge kept as our own code.

Everything else (crawlers, HTTP libraries, browsers, mail clients) comes from package data
(patterns.py). Each rule names where its token was published; `FIRST_PASS_TOKENS` is the short
list the request path checks (app/tracking/classify/__init__.py `first_pass`).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from app.models.tracking import ClientKind


class Rule(NamedTuple):
    token: str  # a literal, matched case-sensitively anywhere in the user agent
    client: ClientKind
    reason: str


PROXY_RULES: tuple[Rule, ...] = (
    # Gmail's image proxy: "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com
    # GoogleImageProxy)". Matomo Device Detector bots.yml "Gmail Image Proxy"; Google proxies every
    # image since https://gmail.googleblog.com/2013/12/images-now-showing.html
    Rule("GoogleImageProxy", ClientKind.gmail_proxy, "ua:gmail-proxy"),
    # Yahoo/AOL Mail: the agent names its own documentation,
    # https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html (also Matomo bots.yml "Yahoo! Mail Proxy").
    Rule("YahooMailProxy", ClientKind.yahoo_proxy, "ua:yahoo-proxy"),
    # Outlook.com's image proxy, when it names itself (kept from the previous classifier). No token
    # is published: its usual loads carry a browser's agent from Microsoft's network (docs/classification.md).
    Rule("OutlookImageProxy", ClientKind.outlook_proxy, "ua:outlook-proxy"),
    # Seznam.cz: "Mozilla/5.0 SeznamEmailProxy/2.0.174" (Matomo bots.yml "Seznam Email Proxy").
    Rule("SeznamEmailProxy", ClientKind.other_proxy, "ua:mail-proxy"),
    # Rambler: "RamblerMail/6.0 (incompatible; ImageProxy/6.0)" (Matomo bots.yml "RamblerMail Image Proxy").
    Rule("RamblerMail", ClientKind.other_proxy, "ua:mail-proxy"),
    # ukr.net: "... (via secureurl.fwdcdn.com - mail.ukr.net proxy)" (Matomo bots.yml "UkrNet Mail Proxy").
    Rule("secureurl.fwdcdn.com", ClientKind.other_proxy, "ua:mail-proxy"),
    # Fastmail: "all user agent strings always contain the string FastmailUA",
    # https://fastmail.com/policies/bots
    Rule("FastmailUA", ClientKind.other_proxy, "ua:mail-proxy"),
    # HEY: "The User-Agent always begins with the identifier hey.com/imageproxy",
    # https://www.hey.com/image-proxy
    Rule("hey.com/imageproxy", ClientKind.other_proxy, "ua:mail-proxy"),
    # Shortwave's image proxy: its full agent string is not published; the agent is listed as
    # "Shortwave Image Fetcher" (https://darkvisitors.com/agents/shortwave-image-fetcher).
    Rule("Shortwave", ClientKind.other_proxy, "ua:mail-proxy"),
)

SCANNER_RULES: tuple[Rule, ...] = (
    # Barracuda's email-protection service (Matomo bots.yml "Barracuda Sentinel", category
    # "Service Agent", https://sentinel.barracudanetworks.com/): "Barracuda Sentinel (EE)".
    Rule("Barracuda Sentinel", ClientKind.scanner, "ua:link-scanner"),
    # Google's abuse crawler, "malware discovery for publicly posted links":
    # https://developers.google.com/search/docs/crawling-indexing/google-special-case-crawlers
    Rule("Google-Safety", ClientKind.scanner, "ua:link-scanner"),
    # VirusTotal's URL scanner ("appid: s~virustotalcloud", crawler-user-agents "virustotal",
    # https://www.virustotal.com/gui/home/url).
    Rule("virustotalcloud", ClientKind.scanner, "ua:link-scanner"),
    # Kaspersky's link checker: "Kaspersky Lab CFR link resolver" (a crawler-user-agents instance).
    Rule("CFR link resolver", ClientKind.scanner, "ua:link-scanner"),
)

UA_RULES = PROXY_RULES + SCANNER_RULES

# The request path's machine tokens: one compiled alternation of literals (a few µs at most).
FIRST_PASS_TOKENS = re.compile("|".join(re.escape(rule.token) for rule in UA_RULES))

# Apple Mail Privacy Protection prefetches every remote image through Apple's relays with the
# bare agent "Mozilla/5.0" (SocketLabs, "Identifying Apple MPP opens",
# https://help.socketlabs.com/docs/identifying-apple-mpp-opens-in-notification-api-events);
# Apple's relays are in its own 17.0.0.0/8 (networks.py).
APPLE_MPP_AGENT = "Mozilla/5.0"

# Prefetch hints: `Purpose: prefetch` / `Sec-Purpose: prefetch[;prerender]` (the Fetch standard
# and https://developer.mozilla.org/docs/Web/HTTP/Headers/Sec-Purpose), Firefox's `X-Moz: prefetch`.
# A HEAD request fetches no image and follows no link: a link checker.
PREFETCH = "prefetch"


def by_token(user_agent: str) -> Rule | None:
    """The first email rule whose token occurs in `user_agent`, if any."""
    if FIRST_PASS_TOKENS.search(user_agent) is None:
        return None
    return next(rule for rule in UA_RULES if rule.token in user_agent)


def is_prefetch(method: object, purpose: object) -> str | None:
    """The reason when the request itself says "machine": HEAD or a prefetch header."""
    if isinstance(method, str) and method.upper() == "HEAD":
        return "method:HEAD"
    if isinstance(purpose, str) and PREFETCH in purpose.lower():
        return "header:prefetch"
    return None
