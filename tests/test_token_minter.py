"""The render's bulk token minter (app/tracking/tokens.TokenMinter) makes real Fernet tokens: the
library decrypts them, the tracking endpoints' codec decodes them, and no two are alike."""

from __future__ import annotations

import base64

import pytest
from cryptography.fernet import Fernet

from app.tracking.tokens import TokenCodec, TokenMinter


def _fernet_bytes(token: str) -> bytes:
    return (token + "=" * (-len(token) % 4)).encode()


def test_minted_tokens_are_fernet_tokens_the_codec_decodes() -> None:
    key = Fernet.generate_key().decode()
    codec, fernet = TokenCodec([key]), Fernet(key)
    minter = codec.minter()
    seen = set()
    for i in range(600):  # past one batch of IVs
        pixel, click = minter.pixel_token(i + 1), minter.click_token(i + 7, 2**62 + i)
        assert codec.decode_pixel(pixel).pixel_id == i + 1  # type: ignore[union-attr]
        ref = codec.decode_click(click)
        assert ref is not None
        assert (ref.link_id, ref.contact_id) == (i + 7, 2**62 + i)
        assert fernet.decrypt(_fernet_bytes(click)) == b"c" + (i + 7).to_bytes(8) + (2**62 + i).to_bytes(8)
        assert len(click) == len(codec.click_token(1, 2))  # the same length as the codec's own
        seen |= {pixel, click}
    assert len(seen) == 1200


def test_a_token_minted_with_another_key_is_refused() -> None:
    minter = TokenMinter(Fernet.generate_key().decode())
    assert TokenCodec([Fernet.generate_key().decode()]).decode_pixel(minter.pixel_token(1)) is None


def test_tampered_minted_tokens_are_refused() -> None:
    key = Fernet.generate_key().decode()
    token = TokenCodec([key]).minter().click_token(3, 4)
    raw = bytearray(base64.urlsafe_b64decode(_fernet_bytes(token)))
    raw[30] ^= 1
    tampered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    assert TokenCodec([key]).decode_click(tampered) is None


def test_the_key_must_be_a_fernet_key() -> None:
    with pytest.raises(ValueError, match="32"):
        TokenMinter(base64.urlsafe_b64encode(b"short").decode())
