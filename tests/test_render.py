"""POST /api/v1/campaigns/{id}/render (issue #13 §1): tracked HTML per contact, streamed.

Byte-for-byte on real-world email HTML (the inserted pixel and trap link removed and every click URL
mapped back to its destination give the input again), what each consent level gets, the selection,
what is created (pixels, links, the trap link) and reused, bad input, and tenant isolation."""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.models import Campaign, Contact, GroupCounts, Link, Pixel, User
from app.schemas.render import RenderRequest
from app.services import render as render_service
from app.services import sendprep
from app.settings import Settings
from app.tracking.tokens import TokenCodec
from app.tracking.urls import TrackingUrls
from tests import factories
from tests.helpers import assert_error, count
from tests.test_render_html import HTMLISH

FIXTURES = Path(__file__).parent / "fixtures" / "email"
OUTLOOK = (FIXTURES / "outlook_newsletter.html").read_text(encoding="utf-8")
MJML = (FIXTURES / "mjml_template.html").read_text(encoding="utf-8")
TEXT = "Hello,\n\nthe new collection: https://www.gruen-und-co.example/kollektion (or https://e.com/b).\n"
SIMPLE = '<html><body><p>Hi <a href="https://shop.example.com/a">A</a> <a href="https://shop.example.com/b">B</a></p></body></html>'
TRAP = re.compile(r'<a href="([^"]+)" style="display:none" aria-hidden="true" tabindex="-1"></a>')


def render_path(campaign: Campaign | int) -> str:
    return f"/api/v1/campaigns/{getattr(campaign, 'id', campaign)}/render"


def rendered(client: Any, campaign: Campaign | int, headers: dict[str, str], **body: Any) -> list[dict[str, Any]]:
    response = client.post(render_path(campaign), json={"html": SIMPLE, **body}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.text == "" or response.text.endswith("\n")
    return [json.loads(line) for line in response.text.splitlines()]


@pytest.fixture
def codec(app: FastAPI, client: Any) -> TokenCodec:
    found: TokenCodec = app.state.tracker.codec
    return found


@pytest.fixture
def campaign(db: Session, user: User) -> Campaign:
    return factories.make_campaign(db, user)


def make_contacts(db: Session, campaign: Campaign, n: int, **kw: Any) -> list[Contact]:
    with factories.one_commit(db):
        group = factories.make_group(db, campaign)
        return [factories.make_contact(db, group, **kw) for _ in range(n)]


def links_of(db: Session, campaign: Campaign) -> dict[int, Link]:
    db.commit()
    return {link.id: link for link in db.scalars(select(Link).where(Link.campaign_id == campaign.id))}


def pixels_of(db: Session, contact_id: int) -> list[tuple[int, int]]:
    db.commit()
    return [(p.id, p.number) for p in db.scalars(select(Pixel).where(Pixel.contact_id == contact_id))]


def unrender(line: dict[str, Any], source: str, codec: TokenCodec, links: dict[int, Link], base: str) -> list[int]:
    """Check that the line's html is `source` but for its pixel, trap link and click URLs; the link ids clicked."""
    html: str = line["html"]
    inserted = ""
    trap = TRAP.search(html)
    if trap is not None:
        inserted = trap.group(0)
        ref = codec.decode_click(trap.group(1).removeprefix(base + "/c/"))
        assert ref is not None
        assert ref.contact_id == line["contact_id"]
        assert links[ref.link_id].trap
    if line["pixel_url"] is not None:
        inserted += TrackingUrls.img_tag(line["pixel_url"])  # the pixel representation's own `html`
    assert html.count(inserted) == 1
    at = html.index(inserted)
    assert html[at + len(inserted) :].startswith("</body>") or at + len(inserted) == len(html)
    html = html[:at] + html[at + len(inserted) :]
    clicked = []
    i = j = 0
    for match in re.finditer(re.escape(base) + r"/c/([A-Za-z0-9_-]+)", html):
        same = html[j : match.start()]
        assert source.startswith(same, i), (source[i : i + 80], same[:80])
        i += len(same)
        ref = codec.decode_click(match.group(1))
        assert ref is not None
        assert ref.contact_id == line["contact_id"]
        url = links[ref.link_id].url
        original = next(raw for raw in (url, url.replace("&", "&amp;")) if source.startswith(raw, i))
        i += len(original)
        j = match.end()
        clicked.append(ref.link_id)
    assert source[i:] == html[j:]
    return clicked


# Byte for byte.


@pytest.mark.parametrize("source", [OUTLOOK, MJML], ids=["outlook-vml", "mjml"])
def test_real_world_html_is_returned_byte_for_byte(
    client: Any,
    db: Session,
    campaign: Campaign,
    headers: dict[str, str],
    codec: TokenCodec,
    settings: Settings,
    source: str,
) -> None:
    contacts = make_contacts(db, campaign, 3)
    lines = rendered(client, campaign, headers, html=source, text=TEXT, trap_link=True)
    assert [line["contact_id"] for line in lines] == [c.id for c in contacts]
    links = links_of(db, campaign)
    expected = source.replace(" data-pt-notrack", "")
    for line, contact in zip(lines, contacts, strict=True):
        assert (line["email"], line["name"]) == (contact.email, contact.name)
        clicked = unrender(line, expected, codec, links, settings.public_base_url)
        assert len(clicked) >= 5
        ref = codec.decode_pixel(line["pixel_url"].removeprefix(settings.public_base_url + "/o/").removesuffix(".gif"))
        assert ref is not None
        assert pixels_of(db, contact.id) == [(ref.pixel_id, 1)]
        text_clicks = re.findall(re.escape(settings.public_base_url) + r"/c/[A-Za-z0-9_-]+", line["text"])
        assert re.sub(r"http://track\.test/c/[A-Za-z0-9_-]+", "URL", line["text"]) == (
            "Hello,\n\nthe new collection: URL (or URL).\n"
        )
        assert len(text_clicks) == 2
    normal = sorted(link.url for link in links.values() if not link.trap)
    assert len(normal) == len(set(normal)) == len({*normal})  # one link per distinct destination
    assert sum(link.trap for link in links.values()) == 1


def test_the_outlook_button_is_tracked_in_vml_and_html(
    client: Any, db: Session, campaign: Campaign, headers: dict[str, str], codec: TokenCodec
) -> None:
    make_contacts(db, campaign, 1)
    (line,) = rendered(client, campaign, headers, html=OUTLOOK)
    by_url = {link.url: link.id for link in links_of(db, campaign).values()}
    button = by_url["https://www.gruen-und-co.example/angebote?src=button"]
    vml = re.search(r'<v:roundrect [^>]*href="http://track\.test/c/([^"]+)"', line["html"])
    assert vml is not None
    assert codec.decode_click(vml.group(1)).link_id == button  # type: ignore[union-attr]
    for untouched in (
        'href="mailto:hallo@gruen-und-co.example?subject=Fr%C3%BChling"',
        'href="tel:+4930123456"',
        'href="#faq"',
        'href="%%unsubscribe_url%%"',
        'href="[[profile_url]]"',
        "href=\"{% url 'browser_view' %}\"",
        'href="*|ARCHIVE|*"',
        'href="https://www.gruen-und-co.example/einloesen?code={{ coupon_code }}"',
        '<a href="https://www.gruen-und-co.example/p/1234"><img',  # data-pt-notrack: only the attribute is gone
    ):
        assert untouched in line["html"], untouched
    assert "data-pt-notrack" not in line["html"]


def test_utm_parameters_are_merged_into_the_links(
    client: Any, db: Session, campaign: Campaign, headers: dict[str, str]
) -> None:
    make_contacts(db, campaign, 1)
    html = (
        '<a href="https://e.com/p?utm_source=own&amp;x=1#top">1</a><a href="https://e.com/q">2</a>'
        '<a href="https://e.com/r?#f">3</a>'
    )
    rendered(client, campaign, headers, html=html, utm={"source": "nl", "medium": "email", "campaign": "spring 26"})
    assert sorted(link.url for link in links_of(db, campaign).values()) == [
        "https://e.com/p?utm_source=own&x=1&utm_medium=email&utm_campaign=spring%2026#top",
        "https://e.com/q?utm_source=nl&utm_medium=email&utm_campaign=spring%2026",
        "https://e.com/r?utm_source=nl&utm_medium=email&utm_campaign=spring%2026#f",
    ]


# What is created, what is reused.


def test_missing_pixels_and_links_are_created_once_and_reused(
    client: Any, db: Session, campaign: Campaign, headers: dict[str, str], codec: TokenCodec, settings: Settings
) -> None:
    fresh, numbered = make_contacts(db, campaign, 2)
    pixel = factories.make_pixel(db, numbered, number=3)
    existing = factories.make_link(db, campaign, "https://shop.example.com/a")
    first = rendered(client, campaign, headers)
    second = rendered(client, campaign, headers)
    links = links_of(db, campaign)
    assert sorted(link.url for link in links.values()) == ["https://shop.example.com/a", "https://shop.example.com/b"]
    assert existing.id in links
    assert len(pixels_of(db, fresh.id)) == 1
    assert pixels_of(db, numbered.id) == [(pixel.id, 3)]  # its own pixel is used, none added
    for lines in (first, second):
        by_contact = {line["contact_id"]: line for line in lines}
        token = by_contact[numbered.id]["pixel_url"].removeprefix(settings.public_base_url + "/o/")
        assert codec.decode_pixel(token.removesuffix(".gif")).pixel_id == pixel.id  # type: ignore[union-attr]
        assert existing.id in unrender(by_contact[fresh.id], SIMPLE, codec, links, settings.public_base_url)
    db.commit()
    counts = db.scalars(select(GroupCounts.pixels).where(GroupCounts.campaign_id == campaign.id)).all()
    assert sum(counts) == 2  # the report counters moved with the new pixel (and the drift check agrees)


def test_nothing_is_created_for_contacts_with_tracking_off(
    client: Any, db: Session, campaign: Campaign, headers: dict[str, str]
) -> None:
    (off,) = make_contacts(db, campaign, 1, tracking="off")
    (line,) = rendered(client, campaign, headers, html=OUTLOOK, text=TEXT, trap_link=True)
    assert line == {
        "contact_id": off.id,
        "email": off.email,
        "name": None,
        "html": OUTLOOK,
        "text": TEXT,
        "pixel_url": None,
    }
    assert pixels_of(db, off.id) == []
    assert links_of(db, campaign) == {}


def test_what_each_consent_level_gets(
    client: Any, db: Session, campaign: Campaign, headers: dict[str, str], codec: TokenCodec, settings: Settings
) -> None:
    with factories.one_commit(db):
        group = factories.make_group(db, campaign)
        full, anonymous, off = (factories.make_contact(db, group, tracking=t) for t in ("full", "anonymous", "off"))
    lines = {line["contact_id"]: line for line in rendered(client, campaign, headers, trap_link=True, text=TEXT)}
    links = links_of(db, campaign)
    assert TRAP.search(lines[full.id]["html"]) is not None
    assert TRAP.search(lines[anonymous.id]["html"]) is None  # the trap link is for `full` only (SPEC §8)
    for contact in (full, anonymous):
        assert lines[contact.id]["pixel_url"] is not None
        assert len(unrender(lines[contact.id], SIMPLE, codec, links, settings.public_base_url)) == 2
    assert (lines[off.id]["html"], lines[off.id]["text"], lines[off.id]["pixel_url"]) == (SIMPLE, TEXT, None)
    assert pixels_of(db, off.id) == []


def test_opens_or_clicks_can_be_left_untracked(
    client: Any, db: Session, campaign: Campaign, headers: dict[str, str]
) -> None:
    (contact,) = make_contacts(db, campaign, 1)
    html = '<body><a href="https://e.com/x" data-pt-notrack>x</a><a href="https://e.com/y">y</a></body>'
    (no_opens,) = rendered(client, campaign, headers, html=html, track_opens=False)
    assert no_opens["pixel_url"] is None
    assert "<img" not in no_opens["html"]
    assert pixels_of(db, contact.id) == []
    (no_clicks,) = rendered(client, campaign, headers, html=html, track_clicks=False, utm={"source": "x"})
    assert no_clicks["html"] == (
        '<body><a href="https://e.com/x">x</a><a href="https://e.com/y">y</a>'
        + TrackingUrls.img_tag(no_clicks["pixel_url"])
        + "</body>"
    )
    assert [link.url for link in links_of(db, campaign).values()] == ["https://e.com/y"]  # from the first render


def test_the_trap_link_is_one_per_campaign_and_shows_in_link_out(
    client: Any, db: Session, campaign: Campaign, headers: dict[str, str], settings: Settings
) -> None:
    make_contacts(db, campaign, 2)
    rendered(client, campaign, headers, html=f'<a href="{settings.public_base_url}/">home</a>', trap_link=True)
    rendered(client, campaign, headers, trap_link=True)
    listed = client.get(f"/api/v1/campaigns/{campaign.id}/links", headers=headers).json()["items"]
    traps = [item for item in listed if item["trap"]]
    assert len(traps) == 1
    assert traps[0]["url"] == settings.public_base_url + "/"
    # The same URL in the template is a link of its own, never the trap link.
    assert [item["url"] for item in listed if not item["trap"]].count(settings.public_base_url + "/") == 1
    assert client.get(f"/api/v1/links/{traps[0]['id']}", headers=headers).json()["trap"] is True


# Which contacts.


def test_selection_filters_and_order(client: Any, db: Session, campaign: Campaign, headers: dict[str, str]) -> None:
    soon = datetime(2026, 5, 1, 9, tzinfo=UTC)
    with factories.one_commit(db):
        a, b = factories.make_group(db, campaign), factories.make_group(db, campaign)
        early = factories.make_contact(db, a, scheduled_at=soon)
        late = factories.make_contact(db, a, scheduled_at=soon + timedelta(days=1))
        sent = factories.make_contact(db, b, status="sent", sent_at=soon)
        other = factories.make_contact(db, b)

    def ids(**body: Any) -> list[int]:
        return [line["contact_id"] for line in rendered(client, campaign, headers, **body)]

    assert ids() == [early.id, late.id, sent.id, other.id]
    assert ids(group_id=a.id) == [early.id, late.id]
    assert ids(contact_ids=[other.id, early.id, other.id]) == [early.id, other.id]
    assert ids(status="sent") == [sent.id]
    assert ids(group_id=b.id, status="scheduled") == [other.id]
    assert ids(scheduled_before=(soon + timedelta(hours=1)).isoformat()) == [early.id]
    assert ids(scheduled_after=(soon + timedelta(hours=1)).isoformat()) == [late.id]
    assert ids(after_contact_id=late.id) == [sent.id, other.id]
    assert ids(contact_ids=[early.id, late.id, sent.id], after_contact_id=early.id) == [late.id, sent.id]


def test_chunks_resume_and_cover_every_contact(
    client: Any, db: Session, campaign: Campaign, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sendprep, "CHUNK", 3)
    contacts = make_contacts(db, campaign, 8)
    ids = [c.id for c in contacts]
    assert [line["contact_id"] for line in rendered(client, campaign, headers)] == ids
    assert [line["contact_id"] for line in rendered(client, campaign, headers, contact_ids=ids[::-1])] == ids
    resumed = rendered(client, campaign, headers, after_contact_id=ids[4])  # a stream broken after 5 lines
    assert [line["contact_id"] for line in resumed] == ids[5:]
    assert count(db, Pixel) == 8


def test_json_answer_for_small_selections(
    client: Any, db: Session, campaign: Campaign, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    contacts = make_contacts(db, campaign, 3)
    response = client.post(
        render_path(campaign), json={"html": SIMPLE}, headers={**headers, "Accept": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    items = response.json()["items"]
    assert [item["contact_id"] for item in items] == [c.id for c in contacts]
    assert set(items[0]) == {"contact_id", "email", "name", "html", "text", "pixel_url"}
    monkeypatch.setattr(render_service, "MAX_JSON_CONTACTS", 2)
    too_many = client.post(
        render_path(campaign), json={"html": SIMPLE}, headers={**headers, "Accept": "application/json"}
    )
    body = assert_error(too_many, 422, "validation_error")
    assert "application/x-ndjson" in body["detail"][0]["msg"]
    assert count(db, Link) == 2  # (the refused request created nothing)
    ndjson = client.post(
        render_path(campaign),
        json={"html": SIMPLE},
        headers={**headers, "Accept": "application/x-ndjson, application/json"},
    )
    assert len(ndjson.text.splitlines()) == 3
    none = client.post(
        render_path(campaign),
        json={"html": SIMPLE, "after_contact_id": contacts[-1].id},
        headers={**headers, "Accept": "application/json"},
    )
    assert none.json() == {"items": []}


def test_a_json_answer_spans_many_buffers(
    client: Any, db: Session, campaign: Campaign, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render_service, "BUFFER_BYTES", 1)  # a buffer per line
    monkeypatch.setattr(sendprep, "CHUNK", 2)
    contacts = make_contacts(db, campaign, 5)
    response = client.post(
        render_path(campaign), json={"html": SIMPLE}, headers={**headers, "Accept": "application/json"}
    )
    assert [item["contact_id"] for item in response.json()["items"]] == [c.id for c in contacts]


def test_too_many_distinct_destinations_are_a_422(
    client: Any, db: Session, campaign: Campaign, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render_service, "MAX_DESTINATIONS", 2)
    make_contacts(db, campaign, 1)
    assert len(rendered(client, campaign, headers, html=SIMPLE + '<a href="https://shop.example.com/a">again</a>')) == 1
    response = client.post(render_path(campaign), json={"html": SIMPLE, "text": "https://e.com/3"}, headers=headers)
    assert "more than 2 distinct link destinations" in assert_error(response, 422)["detail"][0]["msg"]


# Bad input: a clear 4xx in the one error shape, nothing created.

BAD_BODIES = {
    "plain text": {"html": "just some words"},
    "nul": {"html": "<p>a\x00b</p>"},
    "empty": {"html": ""},
    "no html": {"text": "x"},
    "text not a string": {"html": SIMPLE, "text": 5},
    "text a surrogate": {"html": SIMPLE, "text": "a\ud800"},
    "text over 2 MB": {"html": SIMPLE, "text": "😀" * (512 * 1024 + 1)},
    "over 2 MB": {"html": "<p>" + "é" * (1024 * 1024)},
    "broken link": {"html": '<a href="https://">x</a>'},
    "control char in link": {"html": '<a href="https://e.com/a\x01b">x</a>'},
    "too many ids": {"html": SIMPLE, "contact_ids": list(range(1, 10_002))},
    "no ids": {"html": SIMPLE, "contact_ids": []},
    "string id": {"html": SIMPLE, "contact_ids": ["1"]},
    "group and ids": {"html": SIMPLE, "group_id": 1, "contact_ids": [1]},
    "utm unknown key": {"html": SIMPLE, "utm": {"source": "x", "id": "y"}},
    "utm not a string": {"html": SIMPLE, "utm": {"source": 3}},
    "utm empty": {"html": SIMPLE, "utm": {"source": ""}},
    "utm control char": {"html": SIMPLE, "utm": {"source": "a\nb"}},
    "utm a list": {"html": SIMPLE, "utm": ["source"]},
    "bool as string": {"html": SIMPLE, "track_opens": "false"},
    "bad status": {"html": SIMPLE, "status": "opened"},
    "bad date": {"html": SIMPLE, "scheduled_before": "tomorrow"},
    "unknown field": {"html": SIMPLE, "template": "x"},
    "after zero": {"html": SIMPLE, "after_contact_id": 0},
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_input_is_a_422_and_creates_nothing(
    client: Any, db: Session, campaign: Campaign, headers: dict[str, str], body: dict[str, Any]
) -> None:
    make_contacts(db, campaign, 1)
    raw = json.dumps(body).encode()  # (ASCII: a lone surrogate travels as its \u escape)
    response = client.post(render_path(campaign), content=raw, headers={**headers, "Content-Type": "application/json"})
    error = assert_error(response, 422, "validation_error")
    assert len(json.dumps(error)) < 10_000
    assert (count(db, Pixel), count(db, Link)) == (0, 0)


def test_a_bad_link_is_named_with_its_line(
    client: Any, db: Session, campaign: Campaign, headers: dict[str, str]
) -> None:
    response = client.post(
        render_path(campaign), json={"html": '<p>\n\n<a href="http://exa mple.com:x/">x</a>'}, headers=headers
    )
    detail = assert_error(response, 422, "validation_error")["detail"]
    assert detail[0]["loc"] == ["body", "html"]
    assert detail[0]["msg"].startswith("line 3: the link 'http://exa mple.com:x/'")


def test_other_tenants_objects_are_404s(
    client: Any, db: Session, user: User, campaign: Campaign, headers: dict[str, str], other_user: User
) -> None:
    (mine,) = make_contacts(db, campaign, 1)
    theirs = factories.make_tree(db, other_user)
    (elsewhere,) = make_contacts(db, factories.make_campaign(db, user), 1)  # my own, but another campaign
    cases = [
        (render_path(theirs["campaign"]), {"html": SIMPLE}, "Campaign not found."),
        (render_path(campaign), {"html": SIMPLE, "group_id": theirs["group"].id}, "Group not found."),
        (render_path(campaign), {"html": SIMPLE, "group_id": elsewhere.group_id}, "Group not found."),
        (render_path(987_654_321), {"html": SIMPLE}, "Campaign not found."),
    ]
    for path, body, detail in cases:
        assert assert_error(client.post(path, json=body, headers=headers), 404, "not_found")["detail"] == detail
    ids = [mine.id, theirs["contact"].id, elsewhere.id, 987_654_321]
    body = assert_error(
        client.post(render_path(campaign), json={"html": SIMPLE, "contact_ids": ids}, headers=headers), 404
    )
    assert [item["loc"] for item in body["detail"]] == [["body", "contact_ids", i] for i in (1, 2, 3)]
    assert {item["msg"] for item in body["detail"]} == {"Contact not found in this campaign."}
    assert (count(db, Pixel, contact_id=mine.id), count(db, Link, campaign_id=campaign.id)) == (0, 0)


def test_an_admin_renders_any_campaign(
    client: Any, db: Session, campaign: Campaign, admin_headers: dict[str, str]
) -> None:
    make_contacts(db, campaign, 2)
    assert len(rendered(client, campaign, admin_headers)) == 2


def test_a_database_failure_before_the_first_line_is_a_503(
    client: Any, db: Session, campaign: Campaign, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_contacts(db, campaign, 2)

    def down(*_args: Any, **_kw: Any) -> Any:
        raise OperationalError("SELECT 1", {}, Exception("gone"))

    monkeypatch.setattr(sendprep, "ensure_pixels", down)
    assert_error(client.post(render_path(campaign), json={"html": SIMPLE}, headers=headers), 503, "service_unavailable")


# Concurrent renders.


def test_concurrent_renders_create_one_link_per_url_and_one_pixel_per_contact(
    app: FastAPI, client: Any, db: Session, campaign: Campaign, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sendprep, "CHUNK", 7)
    contacts = make_contacts(db, campaign, 30)
    urls = TrackingUrls(settings.public_base_url, app.state.tracker.codec)
    html = "".join(f'<a href="https://e.com/{i}">{i}</a>' for i in range(20))
    factory = app.state.session_factory
    with factory() as session:
        found = session.get_one(Campaign, campaign.id)
        plans = [
            render_service.plan(session, found, RenderRequest(html=html, trap_link=True), urls, as_json=False)
            for _ in range(4)
        ]
    outputs: list[bytes] = [b""] * len(plans)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(plans))

    def run(i: int) -> None:
        try:
            barrier.wait(10)
            outputs[i] = b"".join(render_service.render_lines(factory, plans[i]))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(plans))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    for output in outputs:
        assert [json.loads(line)["contact_id"] for line in output.splitlines()] == [c.id for c in contacts]
    assert count(db, Link, campaign_id=campaign.id) == 21  # 20 URLs and the trap link, whoever came first
    per_contact = db.execute(select(Pixel.contact_id, func.count()).group_by(Pixel.contact_id)).all()
    assert sorted(per_contact) == [(c.id, 1) for c in contacts]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(source=HTMLISH)
def test_odd_html_is_rendered_or_refused_never_a_500(
    client: Any, db: Session, user: User, headers: dict[str, str], source: str
) -> None:
    campaign = db.scalar(select(Campaign).where(Campaign.owner_id == user.id)) or factories.make_campaign(db, user)
    if not count(db, Contact, campaign_id=campaign.id):
        make_contacts(db, campaign, 1)
    response = client.post(render_path(campaign), json={"html": source, "text": source}, headers=headers)
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert_error(response, 422, "validation_error")
    else:
        (line,) = [json.loads(line) for line in response.text.splitlines()]
        assert line["pixel_url"] is not None


def test_line_breaks_of_other_kinds_never_split_a_line(
    client: Any, db: Session, campaign: Campaign, headers: dict[str, str]
) -> None:
    odd = "a\u2028b\u2029c\x85d\x1ce\rf"
    make_contacts(db, campaign, 1, name=odd)
    response = client.post(render_path(campaign), json={"html": f"<p>{odd}</p>", "text": odd}, headers=headers)
    (line,) = response.text.splitlines()  # as Python's splitlines and httpx's iter_lines cut lines
    parsed = json.loads(line)
    assert (parsed["name"], parsed["text"]) == (odd, odd)
    assert parsed["html"].startswith(f"<p>{odd}</p>")
    sheet = client.get(f"/api/v1/campaigns/{campaign.id}/sendsheet?format=ndjson", headers=headers)
    (row,) = sheet.text.splitlines()
    assert json.loads(row)["name"] == odd
