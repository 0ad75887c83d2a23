"""Settings of outcomes (conversions, docs/conversions.md): a base of `Settings` (app/settings.py),
so they are read, documented and checked with every other variable."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from app.settings_intake import IntakeSettings


class ConversionSettings(IntakeSettings):  # and the public intake's (POST /e, GET /e.gif, GET /t.js)
    model_config = SettingsConfigDict(extra="ignore", use_attribute_docstrings=True)

    attribution_token_days: int = Field(default=90, ge=1, le=3650)
    """Days an attribution token (`pt=` on a landing page) opens after its click; older ones are refused (404)."""

    def attribution_token_seconds(self) -> int:
        return self.attribution_token_days * 86_400
