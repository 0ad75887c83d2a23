"""Webhook secrets and signatures (Standard Webhooks, https://www.standardwebhooks.com).

A secret is `whsec_` + base64 of 32 random bytes, shown once at creation (or rotation) and stored
encrypted with the Fernet key (FERNET_OLD_KEYS still decrypt: key rotation). Signatures come from
the `standardwebhooks` reference package: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`;
for 24 h after a rotation the old secret signs too (two space-separated signatures), so receivers
can switch over without losing a delivery.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable
from datetime import datetime

from cryptography.fernet import Fernet, MultiFernet
from standardwebhooks.webhooks import Webhook as Signer

from app import __version__
from app.settings import Settings

PREFIX = "whsec_"
USER_AGENT = f"PixelTracking-Webhooks/{__version__}"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _fernet(settings: Settings) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in settings.fernet_keys()])


def seal(settings: Settings, secret: str) -> str:
    return _fernet(settings).encrypt(secret.encode()).decode()


def unseal(settings: Settings, sealed: str) -> str:
    return _fernet(settings).decrypt(sealed.encode()).decode()


def signature(secrets_: Iterable[str], msg_id: str, timestamp: datetime, body: str) -> str:
    """The `webhook-signature` header: one `v1,…` per secret, space-separated."""
    return " ".join(Signer(secret).sign(msg_id, timestamp, body) for secret in secrets_)


def headers(secrets_: Iterable[str], msg_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature(secrets_, msg_id, timestamp, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
