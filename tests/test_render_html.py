"""The render's template engine without a database (app/rendering/): where the tags are, which hrefs
are tracked, the destination each means, UTM merging, and that everything else is the input,
byte for byte (issue #13 §1)."""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.rendering.destinations import BadDestination, decode_attribute, tracked_destination, with_utm
from app.rendering.template import PIXEL, BadTemplate, Compiled, Destinations, compile_html, compile_text
from app.rendering.tokenizer import Comment, EndTag, StartTag, tokens

FIXTURES = Path(__file__).parent / "fixtures" / "email"
OUTLOOK = (FIXTURES / "outlook_newsletter.html").read_text(encoding="utf-8")
MJML = (FIXTURES / "mjml_template.html").read_text(encoding="utf-8")


def _marked(compiled: Compiled) -> str:
    """The template filled with visible markers: [[n]] per destination, [[PIXEL]]."""
    return compiled.fill([f"[[{i}]]" for i in range(max(compiled.slots, default=0) + 1)], "[[PIXEL]]")


def _check_lossless(compiled: Compiled, source: str, destinations: Destinations, *, html: bool = True) -> None:
    """The pieces and the slots' originals are the input; each destination slot stood for an href
    (or a text URL, taken as it is) that means its registered destination (before UTM), the pixel
    slot for nothing."""
    assert compiled.source() == source
    for slot, original in zip(compiled.slots, compiled.originals, strict=True):
        if slot == PIXEL:
            assert original == ""
        else:
            meant = tracked_destination(original) if html else original
            assert with_utm(meant or "", destinations.utm) == destinations.urls[slot]


# The tokenizer.


class _StdlibTags(HTMLParser):
    """The stdlib parser's start tags and their offsets, to compare with on well-formed documents."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=False)
        self.lines = [0] + [m.end() for m in re.finditer("\n", source)]
        self.found: list[tuple[str, int]] = []
        self.feed(source)
        self.close()

    def handle_starttag(self, tag: str, attrs: object) -> None:
        line, column = self.getpos()
        self.found.append((tag, self.lines[line - 1] + column))


@pytest.mark.parametrize("source", [OUTLOOK, MJML], ids=["outlook", "mjml"])
def test_the_tokenizer_finds_the_tags_html_parser_finds(source: str) -> None:
    ours = [(t.name, t.start) for t in tokens(source) if isinstance(t, StartTag)]
    assert ours == _StdlibTags(source).found
    assert len(ours) > 30


def test_attribute_offsets_are_exact() -> None:
    source = "<a  HREF = 'x y' data-pt-notrack\tclass=big title=\"t\" disabled>"
    (tag,) = list(tokens(source))
    assert isinstance(tag, StartTag)
    assert tag.name == "a"
    assert (tag.start, tag.end) == (0, len(source))
    by_name = {a.name: source[a.value_start : a.value_end] for a in tag.attrs}
    assert by_name == {"href": "x y", "data-pt-notrack": "", "class": "big", "title": "t", "disabled": ""}
    notrack = tag.attr("data-pt-notrack")
    assert notrack is not None
    assert source[notrack.start : notrack.end] == " data-pt-notrack"


def test_comments_raw_text_and_bogus_comments_hide_tags() -> None:
    # `<![CDATA[`, `<?` and `</ ` open bogus comments up to the first `>`: the `<a>`, `<b>`, `<i>` there are in them.
    source = (
        "<!-- <a href='https://1'> --><style>a{}</style x><a href=x><script>'<a href=y>'</script>"
        "<![CDATA[ <a> ]]><?php <b> ?></ <i>><!--><b><!---><u><textarea><a></textarea><p>"
    )
    found = [(type(t).__name__, getattr(t, "name", "")) for t in tokens(source)]
    assert found == [
        ("Comment", ""),
        ("StartTag", "style"),
        ("EndTag", "style"),
        ("StartTag", "a"),
        ("StartTag", "script"),
        ("EndTag", "script"),
        ("Comment", ""),
        ("StartTag", "b"),
        ("Comment", ""),
        ("StartTag", "u"),
        ("StartTag", "textarea"),
        ("EndTag", "textarea"),
        ("StartTag", "p"),
    ]


def test_a_tag_cut_off_by_the_end_is_no_tag() -> None:
    assert [t for t in tokens('<p>x</p><a href="https://example.com/') if isinstance(t, StartTag)][-1].name == "p"


@pytest.mark.parametrize(
    "hostile", ["<!--" * 100_000, "<a href='" * 50_000, "<" * 400_000, "</" * 200_000, "<![" * 100_000, "<a " * 130_000]
)
def test_the_tokenizer_is_linear_on_hostile_input(hostile: str) -> None:
    started = time.process_time()
    list(tokens(hostile))
    compile_html(hostile + "<p>", Destinations())
    assert time.process_time() - started < 5  # the stdlib parser takes minutes on the first


# Which hrefs are tracked, and what they mean.


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://example.com/a", "https://example.com/a"),
        ("HTTP://Example.com/A", "HTTP://Example.com/A"),
        ("  https://example.com/a \n", "https://example.com/a"),
        ("https://example.com/a b", "https://example.com/a%20b"),
        ("https://exa\tmple.com/", "https://example.com/"),
        ("https://example.com/?a=1&amp;b=2", "https://example.com/?a=1&b=2"),
        ("https://example.com/?a=1&copy=2&reg=3", "https://example.com/?a=1&copy=2&reg=3"),
        ("https://example.com/?region=1&x=&lt;", "https://example.com/?region=1&x=<"),
        ("https://example.com/&#x2F;&#47;", "https://example.com///"),
        ("mailto:a@example.com", None),
        ("tel:+4930123", None),
        ("#top", None),
        ("/relative/path", None),
        ("javascript:alert(1)", None),
        ("//example.com/x", None),
        ("https://example.com/{{ id }}", None),
        ("https://example.com/{%url%}", None),
        ("*|ARCHIVE|*", None),
        ("https://example.com/*|ID|*", None),
        ("%%view_online%%", None),
        ("[[unsubscribe]]", None),
        ("https://example.com/?x=&#123;&#123;id}}", None),  # template syntax once decoded
    ],
)
def test_tracked_destination(raw: str, expected: str | None) -> None:
    assert tracked_destination(raw) == expected


@pytest.mark.parametrize(
    "raw", ["https://", "http:///path", "https://exa\x01mple.com/", "https://[::1/", "https://h:99999/"]
)
def test_an_http_href_that_is_no_url_is_refused(raw: str) -> None:
    with pytest.raises(BadDestination):
        tracked_destination(raw)
    with pytest.raises(BadTemplate) as refused:
        compile_html(f'<p>\n<a href="{raw}">x</a>', Destinations())
    assert refused.value.problems[0].startswith("line 2: the link")


def test_decode_attribute_follows_the_attribute_rules() -> None:
    # In an attribute a legacy reference without ";" is not one before "=" or a letter or digit.
    assert decode_attribute("a&amp;b&ampc&amp=d&notit;&notin;&#38;&#x26&copy") == "a&b&ampc&amp=d&notit;∉&&©"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://e.com/p", "https://e.com/p?utm_source=nl&utm_medium=email"),
        ("https://e.com/p?", "https://e.com/p?utm_source=nl&utm_medium=email"),
        ("https://e.com/p?a=1", "https://e.com/p?a=1&utm_source=nl&utm_medium=email"),
        ("https://e.com/p?a=1&", "https://e.com/p?a=1&utm_source=nl&utm_medium=email"),
        ("https://e.com/p#frag?x", "https://e.com/p?utm_source=nl&utm_medium=email#frag?x"),
        ("https://e.com/p?utm_source=own#f", "https://e.com/p?utm_source=own&utm_medium=email#f"),
        ("https://e.com/p?utm_source=&utm_medium=x", "https://e.com/p?utm_source=&utm_medium=x"),
        ("https://e.com/p?UTM_SOURCE=x", "https://e.com/p?UTM_SOURCE=x&utm_source=nl&utm_medium=email"),
        ("https://e.com/p?utm%5Fsource=x", "https://e.com/p?utm%5Fsource=x&utm_medium=email"),
    ],
)
def test_utm_parameters_are_added_only_where_missing(url: str, expected: str) -> None:
    assert with_utm(url, {"source": "nl", "medium": "email"}) == expected


def test_utm_values_are_encoded() -> None:
    assert with_utm("https://e.com/", {"campaign": "spring & summer/2026 ü"}) == (
        "https://e.com/?utm_campaign=spring%20%26%20summer%2F2026%20%C3%BC"
    )


# Templates: slots, untouched links, byte-for-byte.


def test_every_untouched_link_stays_as_it_is() -> None:
    source = (
        '<a href="mailto:x@e.com">m</a><a href="tel:1">t</a><a href="#top">a</a><a href="/rel">r</a>'
        '<a href="{{url}}">1</a><a href="https://e.com/{%x%}">2</a><a href="*|U|*">3</a><a href="%%u%%">4</a>'
        '<a href="[[u]]">5</a><a name="x">no href</a><area href="https://e.com/area"><link href="https://e.com/l">'
        '<img src="https://e.com/i.png"><p data-href="https://e.com/p">https://e.com/in-text</p>'
    )
    destinations = Destinations()
    compiled = compile_html(source, destinations)
    assert destinations.urls == []
    assert compiled.slots == (PIXEL,)
    assert _marked(compiled) == source + "[[PIXEL]]"


def test_notrack_links_lose_only_that_attribute() -> None:
    source = (
        '<a href="https://e.com/1" data-pt-notrack class="x">1</a>'
        "<a data-pt-notrack='yes' href=https://e.com/2>2</a>"
        '<a DATA-PT-NOTRACK\nhref="https://e.com/3"\n>3</a><a href="https://e.com/4">4</a></body>'
    )
    destinations = Destinations()
    compiled = compile_html(source, destinations)
    assert destinations.urls == ["https://e.com/4"]
    assert _marked(compiled) == (
        '<a href="https://e.com/1" class="x">1</a><a href=https://e.com/2>2</a><a\nhref="https://e.com/3"\n>3</a>'
        '<a href="[[0]]">4</a>[[PIXEL]]</body>'
    )


def test_the_pixel_goes_before_the_last_body_end_tag_or_at_the_end() -> None:
    assert _marked(compile_html("<p>x</p>", Destinations())) == "<p>x</p>[[PIXEL]]"
    assert _marked(compile_html("<body>x</BODY ><!-- </body> -->\n", Destinations())) == (
        "<body>x[[PIXEL]]</BODY ><!-- </body> -->\n"
    )
    assert _marked(compile_html("<body>x</body>y</body>z", Destinations())) == "<body>x</body>y[[PIXEL]]</body>z"


def test_without_click_tracking_hrefs_stay_and_notrack_attributes_go() -> None:
    compiled = compile_html('<a href="https://e.com/" data-pt-notrack>x</a>', None)
    assert _marked(compiled) == '<a href="https://e.com/">x</a>[[PIXEL]]'


def test_links_in_outlook_conditionals_and_vml_buttons_are_tracked() -> None:
    destinations = Destinations()
    compiled = compile_html(OUTLOOK, destinations)
    marked = _marked(compiled)
    button = destinations.urls.index("https://www.gruen-und-co.example/angebote?src=button")
    assert '<v:roundrect xmlns:v="urn:schemas-microsoft-com:vml"' in marked
    assert marked.count(f'href="[[{button}]]"') == 2  # the VML button for Outlook and the <a> for the others
    assert 'href="https://not.a.link/">inside' in marked  # in a CSS comment: left alone


@pytest.mark.parametrize("source", [OUTLOOK, MJML], ids=["outlook", "mjml"])
def test_real_world_templates_come_back_byte_for_byte(source: str) -> None:
    destinations = Destinations({"source": "nl"})
    compiled = compile_html(source, destinations)
    _check_lossless(compiled, source.replace(" data-pt-notrack", ""), destinations)
    assert len(destinations.urls) >= 5
    marked = _marked(compiled)
    assert marked.count("[[PIXEL]]") == 1
    assert "[[PIXEL]]</body>" in marked


def test_one_slot_per_distinct_destination() -> None:
    destinations = Destinations({"medium": "email"})
    compile_html(MJML, destinations)
    assert destinations.urls == [
        "https://parcel.example.com/?from=email&utm_medium=email",
        "https://parcel.example.com/help/shipping?topic=eta&lang=en&utm_medium=email",
        "https://parcel.example.com/orders/view?id=982734&utm_campaign=shipped&utm_medium=email",
        "https://parcel.example.com/returns?utm_medium=email",
        "HTTPS://Parcel.Example.com/Privacy?utm_medium=email",
    ]


def test_a_destination_too_long_with_its_utm_is_refused() -> None:
    with pytest.raises(BadTemplate, match="longer than 2048"):
        compile_html(f'<a href="https://e.com/{"x" * 2030}">x</a>', Destinations({"source": "newsletter"}))


# The text part.


def test_text_urls_are_slots_without_their_trailing_punctuation() -> None:
    source = (
        "Shop: https://e.com/a. Or (https://e.com/b), see <https://e.com/c>! Wiki: https://e.com/w_(x) "
        'and "https://e.com/q?x=1&y=2"; skip https://e.com/{{id}} and http:// and mailto:x@e.com\n'
    )
    destinations = Destinations()
    compiled = compile_text(source, destinations)
    assert destinations.urls == [
        "https://e.com/a",
        "https://e.com/b",
        "https://e.com/c",
        "https://e.com/w_(x)",
        "https://e.com/q?x=1&y=2",
    ]
    assert compiled.fill(["<0>", "<1>", "<2>", "<3>", "<4>"], "") == (
        "Shop: <0>. Or (<1>), see <<2>>! Wiki: <3> "
        'and "<4>"; skip https://e.com/{{id}} and http:// and mailto:x@e.com\n'
    )
    assert compile_text(source, None).fill([], "") == source


# Never an error but BadTemplate on odd input, and the splice is always lossless.

HTMLISH = st.lists(
    st.sampled_from(
        [
            "<a href='https://e.com/x'>",
            '<a href="https://e.com/?a=1&amp;b">',
            "<a href=https://e.com/u>",
            '<a href="mailto:x">',
            "<a data-pt-notrack href='https://e.com/n'>",
            "</a>",
            "<!--",
            "-->",
            "<!--[if mso]>",
            "<![endif]-->",
            "<v:rect href='https://e.com/v'>",
            "<body>",
            "</body>",
            "<script>",
            "</script>",
            "<",
            ">",
            "'",
            '"',
            "=",
            "&amp;",
            " ",
            "\n",
            "text",
            "https://e.com/t",
            "{{x}}",
            "<![CDATA[",
            "</",
            "<!",
            "<?",
        ]
    )
    | st.text(max_size=8),
    max_size=40,
).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=HTMLISH)
def test_any_input_compiles_or_is_refused_and_the_splice_is_lossless(source: str) -> None:
    for token in tokens(source):
        assert 0 <= token.start < token.end <= len(source)
        if isinstance(token, Comment):
            assert token.start <= token.data_start <= token.data_end <= token.end
        elif isinstance(token, StartTag | EndTag):
            assert source[token.start] == "<"
    text_destinations = Destinations()
    _check_lossless(compile_text(source, text_destinations), source, text_destinations, html=False)
    destinations = Destinations({"source": "s"})
    try:
        compiled = compile_html(source, destinations)
    except BadTemplate:
        return
    assert compiled.slots.count(PIXEL) == 1
    if "data-pt-notrack" not in source.lower():
        _check_lossless(compiled, source, destinations)
    else:
        assert len(compiled.source()) <= len(source)  # (less when a real tag lost the attribute)
