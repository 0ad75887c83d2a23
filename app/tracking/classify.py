"""Who loaded a pixel or followed a link: a person's mail client, a provider's proxy, or a bot.

Machine opens are kept and recorded with their class (reports split them): dropping,
say, Gmail proxy loads would lose real opens, since Gmail fetches at open time.

- apple_mpp: Apple Mail Privacy Protection prefetches through Apple's relays with the
  bare user agent "Mozilla/5.0" (or from Apple's 17.0.0.0/8 network).
- gmail_proxy: Gmail's image proxy ("GoogleImageProxy", via ggpht.com).
- yahoo_proxy: Yahoo/AOL's image proxy ("YahooMailProxy").
- outlook_proxy: Outlook's image-caching proxy when it names itself; Outlook desktop and
  mobile apps load images from the device and count as `browser`.
- bot: HEAD requests, prefetch hints (Purpose/Sec-Purpose/X-Moz: prefetch), crawlers,
  link scanners and HTTP libraries.
- browser: a real rendering engine or mail client; unknown: anything else or no agent.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import NamedTuple

from app.models.tracking import ClientKind

_APPLE_NET = ipaddress.ip_network("17.0.0.0/8")

_BOT = re.compile(
    r"bot\b|bot/|crawl|spider|slurp|scanner|preview|prefetch|headless|phantomjs|curl/|wget/|python-|"
    r"go-http-client|java/|okhttp|libwww|httpclient|axios|node-fetch|aiohttp|httpx|"
    r"barracuda|proofpoint|mimecast|symantec|forcepoint|trendmicro|safelinks|cisco|ironport|"
    r"microsoft office existence discovery|ms-office.*discovery|facebookexternalhit|slackbot|whatsapp|"
    r"skypeuripreview|linkexpanding|validator|monitor|uptime|check_http|nessus|nmap|zgrab|masscan",
    re.IGNORECASE,
)
_BROWSER = re.compile(
    r"applewebkit|gecko/|trident/|presto/|edge?/|chrome/|firefox/|safari/|thunderbird|"
    r"microsoft outlook|microsoft office/|outlook-(ios|android)|iphone mail|android mail|mail/\d",
    re.IGNORECASE,
)


class Verdict(NamedTuple):
    client: ClientKind
    reason: str  # why (≤ REASON_MAX characters), e.g. "ua:crawler-pattern", "ip:apple", "method:HEAD"


def _is_apple_ip(ip: str | None) -> bool:
    if not ip or not ip.startswith("17."):  # cheap pre-check: this runs on every load
        return False
    try:
        return ipaddress.ip_address(ip) in _APPLE_NET
    except ValueError:
        return False


@lru_cache(maxsize=4096)
def _from_agent(user_agent: str) -> Verdict | None:
    if "GoogleImageProxy" in user_agent:
        return Verdict(ClientKind.gmail_proxy, "ua:gmail-proxy")
    if "YahooMailProxy" in user_agent:
        return Verdict(ClientKind.yahoo_proxy, "ua:yahoo-proxy")
    if "OutlookImageProxy" in user_agent:
        return Verdict(ClientKind.outlook_proxy, "ua:outlook-proxy")
    if user_agent.strip() == "Mozilla/5.0":
        return Verdict(ClientKind.apple_mpp, "ua:apple-mpp")
    if _BOT.search(user_agent):
        return Verdict(ClientKind.bot, "ua:bot-pattern")
    if _BROWSER.search(user_agent):
        return Verdict(ClientKind.browser, "ua:browser")
    return None


def _prefetch(method: str, purpose: str | None) -> str | None:
    if method == "HEAD":
        return "method:HEAD"
    if purpose and "prefetch" in purpose.lower():
        return "header:prefetch"
    return None


def first_pass(user_agent: str | None, *, method: str = "GET", purpose: str | None = None) -> bool:
    """The request path's cheap split: True (machine) for HEAD, a prefetch header or a mail-proxy /
    scanner user agent. It only chooses the dedupe slot (one machine and one human event per window)."""
    if _prefetch(method, purpose):
        return True
    verdict = _from_agent(user_agent[:512]) if user_agent else None
    return verdict is not None and verdict.client is not ClientKind.browser


def classify(
    user_agent: str | None, ip: str | None = None, *, method: str = "GET", purpose: str | None = None
) -> Verdict:
    if reason := _prefetch(method, purpose):
        return Verdict(ClientKind.bot, reason)
    verdict = _from_agent(user_agent[:512]) if user_agent else None
    if verdict is not None and verdict.client is not ClientKind.browser:
        return verdict
    if _is_apple_ip(ip):
        return Verdict(ClientKind.apple_mpp, "ip:apple")
    return verdict or Verdict(ClientKind.unknown, "ua:none" if not user_agent else "ua:unrecognised")
