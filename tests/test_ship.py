"""`pixeltrack ship` in-process against the private Redis (the real nginx + processes: tests/test_edge_nginx.py):
the event each line becomes (the pixel route's rules), its id (HMAC of file identity and offset), the
commit after Redis answered, truncation, and partitioned streams."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from cryptography.fernet import Fernet

from app.clients import sync_redis
from app.tracking.events import STREAM, Event, KeyScheme
from app.tracking.ship import Rules, Shipper, event_key
from app.tracking.tokens import TokenCodec
from tests.support.processes import free_port

KEY = Fernet.generate_key().decode()
CODEC = TokenCodec([KEY])
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0"


def line(pixel: int, *, method: str = "GET", ms: int = 0, **fields: str) -> str:
    data = {"t": f"1796310000.{ms:03d}", "tok": CODEC.pixel_token(pixel), "ip": "203.0.113.7", "ua": UA}
    data |= {"m": method, "s": "200", "p": "", "sp": "", "xp": "", "xm": "", "dnt": "", "gpc": ""} | fields
    return json.dumps(data) + "\n"


def shipper(client: Any, log: Path, **kwargs: Any) -> Shipper:
    state = log.with_name(".state")
    return Shipper(client, CODEC, event_key(KEY), log, state, rotated_idle=0, **kwargs)


def shipped(client: Any, stream: str = STREAM) -> list[Event]:
    return [Event.decode(fields["e"]) for _id, fields in client.xrange(stream)]


def test_each_line_becomes_the_event_the_pixel_route_makes(redis_client: Any, tmp_path: Path) -> None:
    log = tmp_path / "pixels.log"
    log.write_text(
        line(1, ms=5)
        + line(2, method="HEAD")
        + line(3, sp="prefetch")
        + line(4, dnt="1")
        + line(5, gpc=" 1 ")
        + line(6, tok="gAAAAAforged")
        + "not json\n"
        + line(7, s="405", method="POST")
    )
    totals = shipper(redis_client, log, rules=Rules(window_seconds=0, respect_dnt=True, anonymize_ip=True)).run(
        until_idle=True
    )
    events = {e.target_id: e for e in shipped(redis_client)}
    assert sorted(events) == [1, 2, 3]
    first = events[1]
    assert (first.at_ms, first.ip, first.user_agent, first.method, first.machine) == (
        1796310000005,
        "203.0.113.0",
        UA,
        "GET",
        False,
    )
    assert events[2].machine  # HEAD: the machine slot, as in the route
    assert events[3].machine
    assert events[3].purpose == "prefetch"
    assert all(len(e.event_id) == 24 and int(e.event_id, 16) >= 0 for e in events.values())
    assert (totals.lines, totals.recorded, totals.invalid_token, totals.not_recorded, totals.malformed) == (
        8,
        3,
        1,
        3,
        1,
    )


def test_event_ids_depend_on_the_file_and_offset_only_and_on_the_key(redis_client: Any, tmp_path: Path) -> None:
    log = tmp_path / "pixels.log"
    log.write_text(line(1) + line(2) + line(3))
    shipper(redis_client, log, rules=Rules(window_seconds=0)).run(until_idle=True)
    log.with_name(".state").unlink()  # the state lost: read again from the start...
    shipper(redis_client, log, rules=Rules(window_seconds=0)).run(until_idle=True)
    ids = [e.event_id for e in shipped(redis_client)]
    assert len(ids) == 6
    assert ids[:3] == ids[3:]  # ...with the same ids: the database keeps one row each
    assert len(set(ids)) == 3
    other = Shipper(redis_client, CODEC, event_key(Fernet.generate_key().decode()), log, tmp_path / "s2")
    other.rules = Rules(window_seconds=0)
    other.run(until_idle=True)
    assert not set(ids) & {e.event_id for e in shipped(redis_client)[6:]}  # unpredictable without the key


def test_a_truncated_file_gets_a_new_identity(redis_client: Any, tmp_path: Path) -> None:
    log = tmp_path / "pixels.log"
    log.write_text(line(1, ms=1) + line(2, ms=2))
    ship = shipper(redis_client, log, rules=Rules(window_seconds=0))
    ship.run(until_idle=True)
    log.write_text(line(3, ms=3))  # truncated and rewritten: shorter than the committed offset
    ship.run(until_idle=True)
    events = shipped(redis_client)
    assert [e.target_id for e in events] == [1, 2, 3]
    assert len({e.event_id for e in events}) == 3


def test_nothing_is_committed_until_redis_answered(redis_client: Any, tmp_path: Path) -> None:
    log = tmp_path / "pixels.log"
    log.write_text(line(1) + line(2))
    state = log.with_name(".state")
    down = sync_redis(f"redis://127.0.0.1:{free_port()}/0")
    ship = shipper(down, log)
    with pytest.raises(redis_lib.RedisError):
        ship.step()
    assert not state.exists()
    assert ship.totals.lines == 0
    shipper(redis_client, log).run(until_idle=True)
    assert json.loads(state.read_text())["totals"]["recorded"] == 2


def test_partitions_get_one_script_call_each_with_their_own_keys(redis_client: Any, tmp_path: Path) -> None:
    log = tmp_path / "pixels.log"
    log.write_text("".join(line(p) for p in range(1, 9)))
    scheme = KeyScheme.of(4)
    shipper(redis_client, log, scheme=scheme).run(until_idle=True)
    for partition in range(4):
        events = shipped(redis_client, scheme.stream(partition))
        assert sorted(e.target_id for e in events) == [p for p in range(1, 9) if p % 4 == partition]
    assert redis_client.exists("pt:{p1}:d:o:1:h")
