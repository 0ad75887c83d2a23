"""The event feed's cursor: opaque, tamper-proof, bound to the user it was given to.

`<base64url "v1.<user id>.<seq>">.<base64url HMAC-SHA256, 16 bytes>`. The MAC key is derived with
HKDF-SHA256 from the Fernet key under its own label (`pixeltrack events-cursor v1`), so it is
never the token key itself; it follows the Fernet key rotation (cursors signed with a key still
in FERNET_OLD_KEYS are accepted, new ones use FERNET_KEY), and the production checks of those
keys cover it. A cursor that fails the MAC, or was issued to another user, is a 422.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.settings import Settings

LABEL = b"pixeltrack events-cursor v1"
MAC_BYTES = 16


class BadCursor(ValueError):
    """Not a cursor this service issued to this user."""


@lru_cache(maxsize=16)
def _derive(key: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=LABEL).derive(key.encode())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str, body: bytes) -> bytes:
    return hmac.new(_derive(key), body, hashlib.sha256).digest()[:MAC_BYTES]


def encode(settings: Settings, user_id: int, seq: int) -> str:
    body = f"v1.{user_id}.{seq}".encode()
    return f"{_b64(body)}.{_b64(_mac(settings.fernet_keys()[0], body))}"


def decode(settings: Settings, cursor: str, user_id: int) -> int:
    """The position the cursor stands for; BadCursor when forged, foreign or malformed."""
    try:
        body_text, mac_text = cursor.split(".")
        body, mac = _unb64(body_text), _unb64(mac_text)
    except ValueError as exc:
        raise BadCursor("not a cursor of this feed") from exc
    if not any(hmac.compare_digest(mac, _mac(key, body)) for key in settings.fernet_keys()):
        raise BadCursor("not a cursor of this feed")
    version, owner, seq = body.decode().split(".")
    if version != "v1" or int(owner) != user_id:
        raise BadCursor("this cursor was issued to another user")
    return int(seq)
