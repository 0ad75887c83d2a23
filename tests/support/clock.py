"""A wall clock that stands still, for tests of fixed windows (the rate limiter's are minutes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.ratelimit import RateLimiter

MID_MINUTE = 1_800_000_030.0  # 30 s into a minute: a test's hits never straddle two windows


def mid_minute() -> float:
    return MID_MINUTE


@pytest.fixture
def still_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every `RateLimiter` made in the test (an app's, in its lifespan) counts on `mid_minute`
    unless given a clock: an app-level test's hits never straddle two fixed windows (at a
    minute's end they could, once in a while, and the expected 429 did not come)."""
    init = RateLimiter.__init__

    def still(self: RateLimiter, *args: Any, clock: Callable[[], float] = mid_minute, **kwargs: Any) -> None:
        init(self, *args, clock=clock, **kwargs)

    monkeypatch.setattr(RateLimiter, "__init__", still)
