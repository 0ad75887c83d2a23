"""A campaign's HTML or text compiled once into static pieces and slots, filled per contact.

HTML (`compile_html`): the tokenizer finds the `<a>` start tags (and, inside Outlook's
conditional comments `<!--[if mso]>…<![endif]-->`, the `<a>` and VML `<v:…>` tags, whose
`href` is what Outlook users click); a tracked href's value (between its quotes) becomes a
destination slot; a `data-pt-notrack` attribute is cut out (with the whitespace before it) and
that tag's href left alone; the pixel slot is right before the last `</body>`, or at the end.
Everything between is the input's own text, sliced, never re-serialised.

Text (`compile_text`): bare `http(s)://` URLs (trailing punctuation and unbalanced closing
brackets left out) become destination slots; a URL with template syntax or that is no usable
URL is left as it is (prose may say "http://").

Destinations are registered in a shared `Destinations` (their final URL, UTM included → its
index), so the HTML and the text part share one link per URL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from app.rendering.destinations import (
    BadDestination,
    browser_url,
    check,
    has_template_syntax,
    stored_destination,
    tracked_destination,
)
from app.rendering.tokenizer import Comment, StartTag, tokens

PIXEL = -1  # the slot of the pixel (and trap link)
NOTRACK = "data-pt-notrack"
MAX_REPORTED = 20
_CONDITIONAL = re.compile(r"\s*\[if\b[^\]]*\]>", re.IGNORECASE)
_ENDIF = "<![endif]"
_TEXT_URL = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)
_TRAILING = ".,;:!?'\""
_CLOSERS = {")": "(", "]": "[", "}": "{"}


class BadTemplate(ValueError):
    """The template cannot be rendered: `problems` are messages for the client."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class Destinations:
    """The distinct destination URLs (as stored, UTM included) of a render, in first-seen order."""

    utm: dict[str, str] = field(default_factory=dict)
    urls: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)

    def add(self, url: str) -> int:
        stored = stored_destination(url, self.utm)
        found = self.index.get(stored)
        if found is None:
            found = self.index[stored] = len(self.urls)
            self.urls.append(stored)
        return found


@dataclass(frozen=True)
class Compiled:
    """`pieces[0] slot[0] pieces[1] … slot[k-1] pieces[k]`: a slot is a destination index or PIXEL;
    `originals[i]` is the input's text that slot `i` stands for (an href's raw value, "" for the
    pixel): `source()` puts them back."""

    pieces: tuple[str, ...]
    slots: tuple[int, ...]
    originals: tuple[str, ...] = ()

    def fill(self, values: Sequence[str], pixel: str) -> str:
        """The text with each destination slot `i` replaced by `values[i]` and the pixel slot by `pixel`."""
        parts: list[str] = [self.pieces[0]]
        for slot, piece in zip(self.slots, self.pieces[1:], strict=True):
            parts.append(pixel if slot == PIXEL else values[slot])
            parts.append(piece)
        return "".join(parts)

    def source(self) -> str:
        """The input again (but for the `data-pt-notrack` attributes removed)."""
        parts = [self.pieces[0]]
        for original, piece in zip(self.originals, self.pieces[1:], strict=True):
            parts += (original, piece)
        return "".join(parts)

    def map_pieces(self, transform: Callable[[str], str]) -> Compiled:
        return Compiled(tuple(transform(piece) for piece in self.pieces), self.slots, self.originals)


def _line(source: str, offset: int) -> int:
    return source.count("\n", 0, offset) + 1


def _splice(source: str, edits: list[tuple[int, int, int | None]]) -> Compiled:
    """Cut `source` at the edits (start, end, slot or None for a removal), in order."""
    pieces: list[str] = []
    slots: list[int] = []
    originals: list[str] = []
    current: list[str] = []
    at = 0
    for start, end, slot in edits:
        current.append(source[at:start])
        at = end
        if slot is not None:
            pieces.append("".join(current))
            slots.append(slot)
            originals.append(source[start:end])
            current = []
    current.append(source[at:])
    pieces.append("".join(current))
    return Compiled(tuple(pieces), tuple(slots), tuple(originals))


def _link_tag(tag: StartTag, in_conditional: bool) -> bool:
    return tag.name == "a" or (in_conditional and tag.name.startswith("v:"))


def _tag_edits(
    source: str,
    tag: StartTag,
    destinations: Destinations | None,
    edits: list[tuple[int, int, int | None]],
    problems: list[str],
) -> None:
    notrack = [attr for attr in tag.attrs if attr.name == NOTRACK]
    if notrack:
        edits.extend((attr.start, attr.end, None) for attr in notrack)
        return
    href = tag.attr("href")
    if href is None or destinations is None:
        return
    raw = source[href.value_start : href.value_end]
    try:
        url = tracked_destination(raw)
        if url is not None:
            edits.append((href.value_start, href.value_end, destinations.add(url)))
    except BadDestination as exc:
        if len(problems) < MAX_REPORTED:
            shown = raw if len(raw) <= 80 else raw[:77] + "..."
            problems.append(f"line {_line(source, href.value_start)}: the link {shown!r} {exc}")


def compile_html(source: str, destinations: Destinations | None) -> Compiled:
    """`destinations`: where tracked hrefs are registered; None leaves every href as it is (no
    click tracking; `data-pt-notrack` attributes are still removed). BadTemplate lists the
    http(s) hrefs that are no usable URL."""
    edits: list[tuple[int, int, int | None]] = []
    problems: list[str] = []
    body_end = len(source)
    for token in tokens(source):
        if isinstance(token, StartTag):
            if _link_tag(token, False):
                _tag_edits(source, token, destinations, edits, problems)
        elif isinstance(token, Comment):
            data = source[token.data_start : token.data_end]
            opened = _CONDITIONAL.match(data)
            if opened is None:
                continue
            inner_end = data.rfind(_ENDIF)
            stop = token.data_start + (inner_end if inner_end >= opened.end() else len(data))
            for inner in tokens(source, token.data_start + opened.end(), stop):
                if isinstance(inner, StartTag) and _link_tag(inner, True):
                    _tag_edits(source, inner, destinations, edits, problems)
        elif token.name == "body":
            body_end = token.start
    if problems:
        raise BadTemplate(problems)
    edits.append((body_end, body_end, PIXEL))
    edits.sort(key=lambda edit: (edit[0], edit[2] == PIXEL))
    return _splice(source, edits)


def _trimmed(url: str) -> str:
    while url:
        last = url[-1]
        if last in _TRAILING or (last in _CLOSERS and url.count(_CLOSERS[last]) < url.count(last)):
            url = url[:-1]
        else:
            break
    return url


def compile_text(source: str, destinations: Destinations | None) -> Compiled:
    """The text part with its bare http(s) URLs as destination slots (none when `destinations`
    is None); no pixel slot."""
    edits: list[tuple[int, int, int | None]] = []
    if destinations is not None:
        for match in _TEXT_URL.finditer(source):
            url = _trimmed(match.group())
            if has_template_syntax(url) or browser_url(url) != url:
                continue
            try:
                check(url)
                edits.append((match.start(), match.start() + len(url), destinations.add(url)))
            except BadDestination:
                continue
    return _splice(source, edits)
