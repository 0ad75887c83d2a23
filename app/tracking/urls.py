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
        return f"{self.base_url}/o/{self.codec.pixel_token(pixel_id)}.gif"

    def click(self, link_id: int, contact_id: int) -> str:
        return f"{self.base_url}/c/{self.codec.click_token(link_id, contact_id)}"

    @staticmethod
    def img_tag(url: str) -> str:
        return f'<img src="{escape(url)}" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0" />'
