"""The render: a campaign's HTML (and text) per contact, tracked, as a stream of JSON lines.

The templates are tokenized once per request (app/rendering/); per contact the answer is only
joined: the static pieces are JSON-escaped once, and a contact's line is its tokens (one click
token per distinct destination, one pixel token) between them. What it inserts follows the
contact's tracking consent:

| tracking  | links             | pixel | trap link (`trap_link`) |
|-----------|-------------------|-------|-------------------------|
| full      | tracked           | yes   | yes                     |
| anonymous | tracked           | yes   | no                      |
| off       | the input as sent | no    | no                      |

Chunks of contacts are prepared (pixels, links) and committed by app/services/sendprep.py
before they are rendered; the lines go out in buffers of about `BUFFER_BYTES`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from html import escape

from sqlalchemy.orm import Session, sessionmaker

from app.errors import ValidationFailed
from app.models import Campaign, Tracking
from app.rendering import ndjson
from app.rendering.template import BadTemplate, Compiled, Destinations, compile_html, compile_text
from app.rendering.tokenizer import tokens
from app.schemas.render import MAX_JSON_CONTACTS, RenderRequest
from app.services import sendprep
from app.services.sendprep import Links, Recipient, Selection
from app.tracking.urls import TrackingUrls

BUFFER_BYTES = 256 * 1024
MAX_DESTINATIONS = 1000  # distinct tracked URLs per render: a token each per contact
TRAP_ATTRIBUTES = ' style="display:none" aria-hidden="true" tabindex="-1"></a>'
_SENTINEL = "\x00"


_json = ndjson.inside  # `text` as the inside of a JSON string


def _invalid(field: str, messages: list[str]) -> ValidationFailed:
    return ValidationFailed([{"loc": ["body", field], "msg": msg, "type": "value_error"} for msg in messages])


def _html_ish(html: str) -> None:
    if "\x00" in html:
        raise _invalid("html", ["is not HTML: it contains a NUL character"])
    if next(tokens(html), None) is None:
        raise _invalid("html", ["is not HTML: no tag or comment found"])


def trap_destination(urls: TrackingUrls) -> str:
    """Where the trap link redirects (the few machines that follow it): the service's root."""
    return urls.base_url + "/"


@dataclass(frozen=True)
class _Affixes:
    """JSON-escaped text around a token: `prefix + token + suffix`."""

    prefix: str
    suffix: str = ""

    @classmethod
    def around(cls, text: str) -> _Affixes:
        """`text` has the token's place marked by _SENTINEL."""
        prefix, suffix = text.split(_SENTINEL)
        return cls(_json(prefix), _json(suffix))


class Renderer:
    """One request's compiled templates and everything a contact's line needs."""

    def __init__(self, body: RenderRequest, urls: TrackingUrls) -> None:
        _html_ish(body.html)
        utm = body.utm.values() if body.utm is not None else {}
        destinations = Destinations(utm) if body.track_clicks else None
        try:
            html = compile_html(body.html, destinations)
        except BadTemplate as exc:
            raise _invalid("html", exc.problems) from None
        text = compile_text(body.text, destinations) if body.text is not None else None
        if destinations is not None and len(destinations.urls) > MAX_DESTINATIONS:
            raise _invalid("html", [f"more than {MAX_DESTINATIONS} distinct link destinations (html and text)"])
        self.codec = urls.codec.minter()  # (one per request: the stream runs one chunk at a time)
        self.track_opens, self.trap = body.track_opens, body.trap_link
        self.links = Links(
            urls=destinations.urls if destinations is not None else [],
            trap_url=trap_destination(urls) if body.trap_link else None,
        )
        self.html = html.map_pieces(_json)
        self.text = text.map_pieces(_json) if text is not None else None
        self.raw_html = '"' + _json(body.html) + '"'
        self.raw_text = '"' + _json(body.text) + '"' if body.text is not None else "null"
        click = urls.click_of(_SENTINEL)
        self.click_html = _Affixes.around(escape(click))
        self.click_text = _Affixes.around(click)
        self.pixel_url = _Affixes.around(urls.pixel_of(_SENTINEL))
        self.pixel_html = _Affixes.around(urls.img_tag(urls.pixel_of(_SENTINEL)))
        self.trap_html = _Affixes.around(f'<a href="{escape(click)}"{TRAP_ATTRIBUTES}')

    def _filled(self, compiled: Compiled, affixes: _Affixes, tokens: list[str], pixel: str) -> str:
        prefix, suffix = affixes.prefix, affixes.suffix
        return compiled.fill([prefix + token + suffix for token in tokens], pixel)

    def line(self, contact: Recipient) -> str:
        """The contact's JSON line (with its newline)."""
        head = (
            f'{{"contact_id":{contact.id},"email":{ndjson.dumps(contact.email)},'
            f'"name":{ndjson.dumps(contact.name)},"html":'
        )
        if contact.tracking == Tracking.off.value:
            return f'{head}{self.raw_html},"text":{self.raw_text},"pixel_url":null}}\n'
        click = self.codec.click_token
        link_ids = self.links.ids or []
        clicks = [click(link_id, contact.id) for link_id in link_ids]
        pixel = ""
        if self.trap and contact.tracking == Tracking.full.value and self.links.trap_id is not None:
            pixel = self.trap_html.prefix + click(self.links.trap_id, contact.id) + self.trap_html.suffix
        pixel_url = "null"
        if self.track_opens and contact.pixel_id is not None:
            token = self.codec.pixel_token(contact.pixel_id)
            pixel += self.pixel_html.prefix + token + self.pixel_html.suffix
            pixel_url = f'"{self.pixel_url.prefix}{token}{self.pixel_url.suffix}"'
        html = self._filled(self.html, self.click_html, clicks, pixel)
        text = f'"{self._filled(self.text, self.click_text, clicks, "")}"' if self.text is not None else "null"
        return f'{head}"{html}","text":{text},"pixel_url":{pixel_url}}}\n'


@dataclass(frozen=True)
class RenderPlan:
    selection: Selection
    renderer: Renderer


def plan(db: Session, campaign: Campaign, body: RenderRequest, urls: TrackingUrls, *, as_json: bool) -> RenderPlan:
    """Check the request (templates, selection; the JSON answer's size) before anything is created."""
    renderer = Renderer(body, urls)
    selection = sendprep.select_contacts(
        db,
        campaign,
        group_id=body.group_id,
        contact_ids=body.contact_ids,
        status=body.status,
        scheduled_before=body.scheduled_before,
        scheduled_after=body.scheduled_after,
        after_contact_id=body.after_contact_id,
    )
    if as_json and sendprep.count(db, selection, limit=MAX_JSON_CONTACTS) > MAX_JSON_CONTACTS:
        raise ValidationFailed(
            [
                {
                    "loc": ["header", "accept"],
                    "msg": f"More than {MAX_JSON_CONTACTS} contacts selected: ask for application/x-ndjson "
                    "(the default), or select fewer (group_id, contact_ids, status, after_contact_id).",
                    "type": "too_long",
                }
            ]
        )
    return RenderPlan(selection, renderer)


def _lines(factory: sessionmaker[Session], plan: RenderPlan) -> Iterator[Iterator[str]]:
    """The contacts' lines, a prepared chunk at a time (rendered as they are consumed)."""
    renderer = plan.renderer
    for chunk in sendprep.recipients(factory, plan.selection, pixels=renderer.track_opens, links=renderer.links):
        yield (renderer.line(contact) for contact in chunk)


def render_lines(factory: sessionmaker[Session], plan: RenderPlan) -> Iterator[bytes]:
    """The NDJSON answer: the contacts' lines in contact-id order, in pieces of about BUFFER_BYTES."""
    for lines in _lines(factory, plan):
        buffer: list[bytes] = []
        size = 0
        for line in lines:
            encoded = line.encode("utf-8")
            buffer.append(encoded)
            size += len(encoded)
            if size >= BUFFER_BYTES:
                yield b"".join(buffer)
                buffer, size = [], 0
        if buffer:
            yield b"".join(buffer)


def render_json(factory: sessionmaker[Session], plan: RenderPlan) -> Iterator[bytes]:
    """The `Accept: application/json` answer, `{"items": [...]}`: one document, streamed all the same
    (1,000 contacts of a 2 MB template would be 2 GB in memory)."""
    opening = b'{"items":['
    for lines in render_lines(factory, plan):
        yield opening + lines[:-1].replace(b"\n", b",")  # (a line's only raw newline is its last byte)
        opening = b","
    yield b"]}" if opening == b"," else b'{"items":[]}'
