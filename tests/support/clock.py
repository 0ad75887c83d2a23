"""A wall clock that stands still, for tests of fixed windows (the rate limiter's are minutes)."""

from __future__ import annotations

MID_MINUTE = 1_800_000_030.0  # 30 s into a minute: a test's hits never straddle two windows


def mid_minute() -> float:
    return MID_MINUTE
