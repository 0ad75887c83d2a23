"""API keys: long-lived credentials for unattended campaign tools (`Authorization: Bearer pt_…`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import TABLE_ARGS, Base, BigId, utcnow


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (TABLE_ARGS,)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    owner_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    # The key's first characters as shown in lists (`pt_AbCd1234`), to tell keys apart.
    prefix: Mapped[str] = mapped_column(String(16))
    # SHA-256 (hex) of the whole key: the key is 32 random bytes, so a fast hash is enough and
    # a lookup by it costs one indexed read per request. The key itself is never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
