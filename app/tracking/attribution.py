"""The attribution token (`pt=` on a landing page, docs/conversions.md).

A click on a link with `attribution` is redirected to its destination with `pt=<token>` added.
The token names the campaign, the group, the contact (0: an `anonymous` contact, named by no
one), the link and the click's event id, and when it was issued; nothing of it is readable.

- Sealed with AES-SIV (authenticated encryption: a forged or altered token does not open) under a
  key derived with HKDF-SHA256 from the Fernet key, with its own label, so it is never the token
  key itself and cannot be replayed as a pixel or click token (nor those as this). It follows
  the Fernet key rotation: tokens sealed under a key still in FERNET_OLD_KEYS open.
- Layout (49 bytes before sealing): version 1 | campaign, group, contact, link (8 bytes each) |
  click event id (12 bytes) | issued at (4 bytes, seconds since the epoch). Base64url, no padding:
  87 characters.
- Expired (older than the lifetime, ATTRIBUTION_TOKEN_DAYS) or from the future: does not open.
"""

from __future__ import annotations

import base64
import binascii
import struct
import time
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

LABEL = b"pixeltrack attribution v1"
VERSION = 1
_LAYOUT = struct.Struct(">BQQQQ12sI")
MAX_LENGTH = 128
CLOCK_SKEW = 300  # seconds a token may seem to come from the future (another server's clock)


@dataclass(frozen=True, slots=True)
class Attribution:
    campaign_id: int
    group_id: int
    contact_id: int  # 0: an `anonymous` contact
    link_id: int
    click_event_id: str  # 24 hex digits
    issued_at: int  # seconds since the epoch

    @property
    def anonymous(self) -> bool:
        return self.contact_id == 0


@lru_cache(maxsize=16)
def _sealer(fernet_key: str) -> AESSIV:
    return AESSIV(HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=LABEL).derive(fernet_key.encode()))


class AttributionCodec:
    """Seal and open attribution tokens; keys as TokenCodec's (the first seals, all open)."""

    def __init__(self, fernet_keys: list[str], *, lifetime_seconds: int) -> None:
        if not fernet_keys:
            raise ValueError("at least one Fernet key is required")
        self._sealers = [_sealer(key) for key in fernet_keys]
        self.lifetime = lifetime_seconds

    def seal(self, a: Attribution) -> str:
        raw = _LAYOUT.pack(
            VERSION, a.campaign_id, a.group_id, a.contact_id, a.link_id, bytes.fromhex(a.click_event_id), a.issued_at
        )
        return base64.urlsafe_b64encode(self._sealers[0].encrypt(raw, None)).rstrip(b"=").decode("ascii")

    def open(self, token: str, *, now: float | None = None) -> Attribution | None:
        """The attribution, or None: forged, altered, malformed, expired or not yet valid."""
        if not 0 < len(token) <= MAX_LENGTH or not token.isascii():
            return None
        try:
            sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        if base64.urlsafe_b64encode(sealed).rstrip(b"=") != token.encode():
            return None  # not as sealed (padding, unused low bits): one token, one spelling
        for sealer in self._sealers:
            try:
                raw = sealer.decrypt(sealed, None)
            except (InvalidTag, ValueError):
                continue
            if len(raw) != _LAYOUT.size:
                return None
            version, campaign, group, contact, link, click, issued = _LAYOUT.unpack(raw)
            current = time.time() if now is None else now
            if version != VERSION or not current - self.lifetime <= issued <= current + CLOCK_SKEW:
                return None
            return Attribution(campaign, group, contact, link, click.hex(), issued)
        return None
