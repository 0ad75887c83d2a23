"""Which hrefs are tracked, the destination URL each means, and the UTM parameters added to it.

- Tracked: an `http:`/`https:` destination. Left alone: every other scheme (`mailto:`, `tel:`,
  ...), fragments (`#top`), relative URLs, and anything with template syntax (`{{`, `{%`, `*|`,
  `%%`, `[[`: the campaign tool fills those in after us).
- The destination is the attribute value as a browser reads it: character references decoded as
  in an attribute value (`&amp;` → `&`; a legacy reference without `;` before `=` or a letter or
  digit, as in `?a=1&copy=2`, is not one), leading and trailing whitespace dropped, tabs and
  newlines removed, inner spaces as `%20` (what a browser's URL parser does with them).
- It must then be a URL we can store and redirect to: scheme, `//`, a host, no control
  characters, at most 2,048 characters with its UTM parameters (`BadDestination` otherwise).
- UTM: each `utm_*` parameter given is appended unless the destination's query already has it;
  the existing query string and the `#fragment` are kept as they are.
"""

from __future__ import annotations

import re
from html import unescape
from html.entities import html5
from urllib.parse import quote, unquote_plus, urlsplit

TEMPLATE_MARKERS = ("{{", "{%", "*|", "%%", "[[")
MAX_URL = 2048  # links.url
UTM_FIELDS = ("source", "medium", "campaign", "content", "term")

_REFERENCE = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[A-Za-z][A-Za-z0-9]*;?)")
_TRACKED = re.compile(r"https?://", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_URL_SPACE = " \t\n\f\r"


class BadDestination(ValueError):
    """An http(s) href that is no URL we can store and redirect to."""


def decode_attribute(value: str) -> str:
    """An attribute value with its character references decoded, as a browser does."""
    if "&" not in value:
        return value

    def decoded(match: re.Match[str]) -> str:
        ref = match.group(1)
        if ref[0] == "#":
            return unescape(match.group())
        if ref.endswith(";"):
            return html5.get(ref, match.group())
        # A legacy reference without its ";": only outside a longer name and not before "=".
        following = value[match.end() : match.end() + 1]
        if ref not in html5 or following == "=":
            return match.group()
        return html5[ref]

    return _REFERENCE.sub(decoded, value)


def has_template_syntax(value: str) -> bool:
    return any(marker in value for marker in TEMPLATE_MARKERS)


def browser_url(value: str) -> str:
    """What a browser's URL parser makes of the text: outer whitespace dropped, tabs and newlines
    removed, spaces encoded."""
    url = value.strip(_URL_SPACE)
    if "\t" in url or "\n" in url or "\r" in url:
        url = url.replace("\t", "").replace("\n", "").replace("\r", "")
    return url.replace(" ", "%20")


def tracked_destination(raw_value: str) -> str | None:
    """The destination URL of an href's raw attribute value when it is to be tracked, else None
    (another scheme, a fragment, a relative URL, template syntax). BadDestination for an http(s)
    value that is not a usable URL."""
    if has_template_syntax(raw_value):
        return None
    value = decode_attribute(raw_value)
    if has_template_syntax(value):
        return None
    url = browser_url(value)
    if not _TRACKED.match(url):
        return None
    check(url)
    return url


def check(url: str) -> None:
    if _CONTROL.search(url):
        raise BadDestination("contains a control character")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a malformed port)
    except ValueError as exc:
        raise BadDestination(str(exc)) from None
    if not parts.hostname:
        raise BadDestination("has no host")


def with_utm(url: str, utm: dict[str, str]) -> str:
    """The URL with `utm_<name>=<value>` appended for each UTM value it does not carry yet
    (query and fragment otherwise kept as they are)."""
    if not utm:
        return url
    base, hash_, fragment = url.partition("#")
    path, question, query = base.partition("?")
    present = {unquote_plus(pair.partition("=")[0]) for pair in query.split("&") if pair}
    added = [
        f"utm_{name}={quote(value, safe='')}"
        for name, value in utm.items()
        if value is not None and f"utm_{name}" not in present
    ]
    if not added:
        return url
    if not question:
        query = "&".join(added)
    else:
        query = query + ("" if query.endswith("&") or not query else "&") + "&".join(added)
    return f"{path}?{query}{hash_}{fragment}"


def stored_destination(url: str, utm: dict[str, str]) -> str:
    """The URL stored in the link: with its UTM parameters, checked for length."""
    final = with_utm(url, utm)
    if len(final) > MAX_URL:
        raise BadDestination(f"is longer than {MAX_URL} characters")
    return final
