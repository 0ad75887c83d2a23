"""Public tracking URLs (what goes into emails), built from PUBLIC_BASE_URL and a Fernet token."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from app.tracking.tokens import TokenCodec


@dataclass(frozen=True)
class TrackingUrls:
    base_url: str
    codec: TokenCodec

    def pixel(self, pixel_id: int) -> str:
        return self.pixel_of(self.codec.pixel_token(pixel_id))

    def click(self, link_id: int, contact_id: int) -> str:
        return self.click_of(self.codec.click_token(link_id, contact_id))

    def pixel_of(self, token: str) -> str:
        """The pixel URL of a pixel token (the render fills in tokens it mints itself)."""
        return f"{self.base_url}/o/{token}.gif"

    def click_of(self, token: str) -> str:
        return f"{self.base_url}/c/{token}"

    @staticmethod
    def img_tag(url: str) -> str:
        return f'<img src="{escape(url)}" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0" />'
