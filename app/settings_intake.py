"""Settings of the public conversion intake (POST /e, GET /e.gif, GET /t.js; docs/conversions.md):
a base of `Settings` (app/settings.py), so they are read, documented and checked with every other
variable."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IntakeSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", use_attribute_docstrings=True)

    conversion_rate_limit_per_minute: int = Field(default=120, ge=0, le=1_000_000)
    """Conversions one IP address may post per minute (POST /e and GET /e.gif; 0: no limit); past it, 429."""
    conversion_origins_refresh_seconds: float = Field(default=60.0, ge=1, le=3600)
    """Each API process reloads the campaigns' `conversion_origins` this often (besides at once on a change)."""
