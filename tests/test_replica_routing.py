"""The read-replica routing rules without servers (the real pair: tests/test_read_replica.py)."""

from __future__ import annotations

import asyncio

from sqlalchemy.orm import Session, sessionmaker

from app.replicas import ReadRouter, StickyUsers, _gtid, _reached


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_gtid_positions_compare_per_domain() -> None:
    assert _gtid("0-1-42,1-2-7") == {0: 42, 1: 7}
    assert _gtid("") == {}
    assert _gtid(None) == {}
    assert _reached({0: 42, 1: 7}, {0: 42})
    assert not _reached({0: 41}, {0: 42})
    assert not _reached({0: 50}, {0: 42, 1: 1})  # a domain the replica has never applied


def test_a_write_makes_only_its_user_sticky_and_only_for_the_window() -> None:
    clock = Clock()
    sticky = StickyUsers(5.0, None, clock=clock)

    async def run() -> list[bool]:
        await sticky.mark(1)
        seen = [await sticky.sticky(1), await sticky.sticky(2)]
        clock.now += 4.9
        seen.append(await sticky.sticky(1))
        clock.now += 0.2
        seen.append(await sticky.sticky(1))
        return seen

    assert asyncio.run(run()) == [True, False, True, False]


def test_sticky_seconds_zero_turns_stickiness_off() -> None:
    sticky = StickyUsers(0.0, None)

    async def run() -> bool:
        await sticky.mark(1)
        return await sticky.sticky(1)

    assert asyncio.run(run()) is False


def test_without_a_replica_every_read_uses_the_primary_reader() -> None:
    factory: sessionmaker[Session] = sessionmaker()
    reads = ReadRouter(factory)
    assert not reads.enabled
    target = asyncio.run(reads.target(1))
    assert target.name == "primary"
    assert target.factory is factory
