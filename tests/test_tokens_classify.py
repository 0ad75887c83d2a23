"""The token codec and the event wire form (pure logic, no database). The client classification's
tests are in tests/test_classify.py."""

from __future__ import annotations

import re

import pytest
from cryptography.fernet import Fernet

from app.tracking.events import CLICK, OPEN, Event, anonymize_ip
from app.tracking.tokens import ClickRef, PixelRef, TokenCodec

KEY, OLD_KEY = Fernet.generate_key().decode(), Fernet.generate_key().decode()
URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


def test_pixel_token_round_trip_and_is_url_safe() -> None:
    codec = TokenCodec([KEY])
    token = codec.pixel_token(123456789)
    assert URL_SAFE.match(token), token
    assert codec.decode_pixel(token) == PixelRef(123456789)
    assert codec.decode_pixel(token + ".gif") is None  # the route strips the suffix, the codec does not


def test_click_token_round_trip() -> None:
    codec = TokenCodec([KEY])
    token = codec.click_token(7, 2**40)
    assert URL_SAFE.match(token)
    assert codec.decode_click(token) == ClickRef(7, 2**40)


def test_tokens_of_one_kind_do_not_decode_as_the_other() -> None:
    codec = TokenCodec([KEY])
    assert codec.decode_click(codec.pixel_token(1)) is None
    assert codec.decode_pixel(codec.click_token(1, 2)) is None


@pytest.mark.parametrize("position", [0, 10, 40, 70, -1])
def test_tampered_tokens_are_rejected(position: int) -> None:
    codec = TokenCodec([KEY])
    token = codec.pixel_token(42)
    chars = list(token)
    chars[position] = "A" if chars[position] != "A" else "B"
    assert codec.decode_pixel("".join(chars)) is None


def test_rotation_old_key_still_decodes_until_rotated_out() -> None:
    old_token = TokenCodec([OLD_KEY]).pixel_token(99)
    rotated = TokenCodec([KEY, OLD_KEY])
    assert rotated.decode_pixel(old_token) == PixelRef(99)
    # New tokens are made with the new key only.
    assert TokenCodec([KEY]).decode_pixel(rotated.pixel_token(5)) == PixelRef(5)
    # Once the old key is removed, its tokens are dead.
    assert TokenCodec([KEY]).decode_pixel(old_token) is None


@pytest.mark.parametrize(
    "garbage",
    ["", "a", "x" * 10_000, "é" * 50, "../../etc/passwd", "gAAAAA" + "=" * 50, "%00", "\x00\x01", "💥" * 10, "🙂.gif"],
)
def test_garbage_tokens_decode_to_none(garbage: str) -> None:
    codec = TokenCodec([KEY])
    assert codec.decode_pixel(garbage) is None
    assert codec.decode_click(garbage) is None


def test_token_from_another_installation_is_rejected() -> None:
    assert TokenCodec([KEY]).decode_pixel(TokenCodec([OLD_KEY]).pixel_token(1)) is None


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("2001:db8:abcd:12:34::1", "2001:db8:abcd::"),
        ("::ffff:203.0.113.77", "203.0.113.0"),
        ("not-an-ip", ""),
    ],
)
def test_anonymize_ip(ip: str, expected: str) -> None:
    assert anonymize_ip(ip) == expected


def test_event_wire_form_round_trip_strips_separator() -> None:
    event = Event(CLICK, 5, 9, 1_700_000_000_123, "", "203.0.113.1", "UA with \x1f separator")
    decoded = Event.decode(event.encode())
    assert decoded == Event(CLICK, 5, 9, 1_700_000_000_123, "", "203.0.113.1", "UA with   separator")
    assert Event(OPEN, 1, 0, 1, "", "", "", machine=True).dedupe_key == "pt:d:o:1:m"
    assert event.dedupe_key == "pt:d:c:5:9:h"
    with pytest.raises(ValueError, match="malformed"):
        Event.decode("x\x1f1")


def test_every_single_character_change_is_rejected() -> None:
    """Exhaustive over positions and the whole alphabet: no other spelling of a token is valid."""
    codec = TokenCodec([KEY])
    token = codec.pixel_token(7)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    accepted = [
        (i, c)
        for i in range(len(token))
        for c in alphabet
        if c != token[i] and codec.decode_pixel(token[:i] + c + token[i + 1 :]) is not None
    ]
    assert accepted == []
