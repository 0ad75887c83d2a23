"""Who loaded a pixel or followed a link: a person's mail client, a provider's proxy, a scanner or a bot.

Machine loads are kept and recorded with their class and a `reason` (reports split them):
dropping, say, Gmail proxy loads would lose real opens, since Gmail fetches at open time.
The classes, every reason string and the data sources are in docs/classification.md.

- `first_pass(ua, method=, purpose=)`: the request path's cheap machine/human split (HEAD, a
  prefetch header, or a mail-proxy/scanner token; no package data), a few µs. It only picks the
  dedupe slot: one machine and one human event per window.
- `classify(ua, ip, method=, purpose=)`: the full verdict, run off the hot path (the worker),
  from the email rules (email_rules.py, our own, each citing its source), the scanner ranges
  and Apple's network (networks.py), then maintained package data (patterns.py). Tens of µs
  per distinct agent; the agent part is cached (`_agent_verdict`).

Input is never trusted: an agent of any length or bytes is cut to `UA_MAX` (512, the length
the request path stores, app/tracking/events.py) before matching; a missing agent, a garbage
or private address, an unknown method: always a Verdict, never an exception.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from app.models.tracking import REASON_MAX, ClientKind
from app.tracking.classify import email_rules
from app.tracking.classify.networks import APPLE, SCANNER, ip_class
from app.tracking.classify.patterns import Matchers, data_versions, matchers
from app.tracking.events import UA_MAX

__all__ = [
    "REASONS",
    "REASON_MAX",
    "UA_MAX",
    "Verdict",
    "classify",
    "classify_by_class",
    "data_versions",
    "first_pass",
    "ip_class",
]


class Verdict(NamedTuple):
    client: ClientKind
    reason: str  # why (≤ REASON_MAX characters), e.g. "ua:crawler-user-agents", "ip:apple", "method:HEAD"


# Data sources in the order they are asked; the first that says "machine" names the reason.
_BOT_SOURCES = (
    ("matomo_bot", "ua:matomo-bot"),
    ("matomo_library", "ua:matomo-library"),
    ("uap_spider", "ua:uap-spider"),
    ("crawler", "ua:crawler-user-agents"),
)

# Every reason a verdict can carry (docs/classification.md has a row for each).
REASONS = (
    "method:HEAD",
    "header:prefetch",
    "ua:missing",
    "ua:apple-mpp",
    "ip:apple",
    *dict.fromkeys(rule.reason for rule in email_rules.UA_RULES),
    "ip:scanner-range",
    *(reason for _, reason in _BOT_SOURCES),
    "ua:mail-client",
    "ua:browser-engine",
    "ua:unrecognised",
)


def clean_agent(user_agent: object) -> str:
    """The agent as matched: text, cut to UA_MAX, lone surrogates replaced (RE2 reads UTF-8)."""
    if isinstance(user_agent, bytes | bytearray):
        user_agent = bytes(user_agent[:UA_MAX]).decode("latin-1")
    if not isinstance(user_agent, str):
        return ""
    text = user_agent[:UA_MAX]
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def first_pass(user_agent: str | None, *, method: str = "GET", purpose: str | None = None) -> bool:
    """True (machine) for HEAD, a prefetch header, Apple MPP's bare agent or a mail-proxy /
    scanner token; no package lookups. Chooses the dedupe slot only; `classify` decides the class."""
    if email_rules.is_prefetch(method, purpose):
        return True
    if not user_agent or not isinstance(user_agent, str):
        return False
    agent = user_agent[:UA_MAX]
    return agent.strip() == email_rules.APPLE_MPP_AGENT or email_rules.FIRST_PASS_TOKENS.search(agent) is not None


def agent_verdict(agent: str, sources: Matchers) -> Verdict:
    """What the agent alone says (no method, no address). `agent` is already cleaned."""
    stripped = agent.strip()
    if not stripped:
        return Verdict(ClientKind.unknown, "ua:missing")
    if stripped == email_rules.APPLE_MPP_AGENT:
        return Verdict(ClientKind.apple_mpp, "ua:apple-mpp")
    if rule := email_rules.by_token(agent):
        return Verdict(rule.client, rule.reason)
    for name, reason in _BOT_SOURCES:
        if getattr(sources, name)(agent):
            return Verdict(ClientKind.bot, reason)
    if sources.mail_client(agent):
        return Verdict(ClientKind.browser, "ua:mail-client")
    if sources.engine(agent):
        return Verdict(ClientKind.browser, "ua:browser-engine")
    return Verdict(ClientKind.unknown, "ua:unrecognised")


@lru_cache(maxsize=16384)
def _agent_verdict(agent: str) -> Verdict:
    return agent_verdict(agent, matchers())


def combine(agent: Verdict, where: str, method: object = "GET", purpose: object = None) -> Verdict:
    """The final verdict from the agent's, the address class (`ip_class`) and the request."""
    if reason := email_rules.is_prefetch(method, purpose):
        return Verdict(ClientKind.bot, reason)
    if agent.reason in ("ua:missing", "ua:unrecognised") or agent.client is ClientKind.browser:
        # A scanner fetches with a browser's agent (or none); MPP's relays sometimes send one too.
        if where == SCANNER:
            return Verdict(ClientKind.scanner, "ip:scanner-range")
        if where == APPLE:
            return Verdict(ClientKind.apple_mpp, "ip:apple")
    elif agent.client is ClientKind.bot and where == SCANNER:
        return Verdict(ClientKind.scanner, "ip:scanner-range")
    return agent


def classify(
    user_agent: str | None, ip: str | None = None, *, method: str = "GET", purpose: str | None = None
) -> Verdict:
    """Who made the request. Never raises: bad input yields `unknown` with a reason."""
    where = ip_class(ip) if isinstance(ip, str) or ip is None else ""
    return classify_by_class(user_agent, where, method=method, purpose=purpose)


def classify_by_class(
    user_agent: str | None, where: str, *, method: str = "GET", purpose: str | None = None
) -> Verdict:
    """`classify` with the address already reduced to its class (`ip_class(ip)`): the same
    verdict for every address of a class, so a caller can cache on (agent, class, method, purpose)."""
    return combine(_agent_verdict(clean_agent(user_agent)), where, method, purpose)
