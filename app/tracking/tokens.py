"""Fernet tokens for pixel and click URLs.

A token carries only a compact identity: a kind byte and 64-bit ids
(pixel: `o` + pixel id; click: `c` + link id + contact id). It is encrypted and
authenticated with FERNET_KEY; older keys (FERNET_OLD_KEYS) still decode, so keys
can be rotated without breaking emails already sent. Tokens never expire. The '='
padding is dropped so the token is a plain URL path segment.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

_PIXEL = struct.Struct(">cQ")
_CLICK = struct.Struct(">cQQ")
MAX_TOKEN_LENGTH = 256
_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True, slots=True)
class PixelRef:
    pixel_id: int


@dataclass(frozen=True, slots=True)
class ClickRef:
    link_id: int
    contact_id: int


class TokenCodec:
    """Encode/decode tracking tokens. Valid pixel tokens are remembered (a bounded map), so
    the repeat loads of an email (proxy prefetch, then the reader) skip the decryption."""

    def __init__(self, keys: list[str], *, cache_size: int = 200_000) -> None:
        if not keys:
            raise ValueError("at least one Fernet key is required")
        self._encoder = Fernet(keys[0])
        self._decoder: Fernet | MultiFernet = (
            self._encoder if len(keys) == 1 else MultiFernet([Fernet(k) for k in keys])
        )
        self._cache: dict[str, PixelRef] = {}
        self._cache_size = cache_size

    def _encode(self, payload: bytes) -> str:
        return self._encoder.encrypt(payload).decode("ascii").rstrip("=")

    def _decode(self, token: str | bytes) -> bytes | None:
        if isinstance(token, str) and not token.isascii():
            return None  # not "ignore": a real token with a non-ASCII character added is tampered
        raw = token.encode("ascii") if isinstance(token, str) else token
        if not 0 < len(raw) <= MAX_TOKEN_LENGTH or not _ALPHABET.issuperset(raw):
            return None
        padded = raw + b"=" * (-len(raw) % 4)
        try:
            # Only the canonical spelling: base64 ignores the spare bits of the last character,
            # so without this check a "tampered" last character could still decode.
            if base64.urlsafe_b64encode(base64.urlsafe_b64decode(padded)) != padded:
                return None
            return self._decoder.decrypt(padded)
        except (InvalidToken, ValueError, TypeError, binascii.Error):
            return None

    def pixel_token(self, pixel_id: int) -> str:
        return self._encode(_PIXEL.pack(b"o", pixel_id))

    def click_token(self, link_id: int, contact_id: int) -> str:
        return self._encode(_CLICK.pack(b"c", link_id, contact_id))

    def decode_pixel(self, token: str) -> PixelRef | None:
        """The pixel a token names, or None for anything invalid, tampered or foreign."""
        ref = self._cache.get(token)
        if ref is not None:
            return ref
        payload = self._decode(token)
        if payload is None or len(payload) != _PIXEL.size or payload[:1] != b"o":
            return None
        ref = PixelRef(_PIXEL.unpack(payload)[1])
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[token] = ref  # only authenticated tokens: bounded by the pixels that exist
        return ref

    def decode_click(self, token: str | bytes) -> ClickRef | None:
        payload = self._decode(token)
        if payload is None or len(payload) != _CLICK.size or payload[:1] != b"c":
            return None
        _, link_id, contact_id = _CLICK.unpack(payload)
        return ClickRef(link_id, contact_id)
