"""The event feed `GET /api/v1/events` (issue #14): exactly once in commit order, owner-scoped,
tamper-proof cursors, consent, erasure; on both database legs."""

from __future__ import annotations

import base64
import threading
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, delete, insert, select, text
from sqlalchemy.orm import Session

from app.models import Event, User
from app.settings import Settings
from app.webhooks import cursor, sequence
from tests.helpers import assert_error
from tests.support.processes import wait_until
from tests.support.webhooks import click, consent_tree, ingest, opens


def page(client: TestClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = client.get("/api/v1/events", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def follow(
    client: TestClient, headers: dict[str, str], after: str | None = None, **params: Any
) -> tuple[list[str], str]:
    """Every event id from `after` on, following `next` (pages of 2)."""
    seen: list[str] = []
    while True:
        body = page(client, headers, limit=2, **({"after": after} if after else {}), **params)
        seen += [item["id"] for item in body["items"]]
        assert body["next"]
        after = body["next"]
        if not body["items"]:
            return seen, after


def test_following_next_sees_every_event_once_and_then_polls(
    client: TestClient, db: Session, engine: Engine, user: User, headers: dict[str, str]
) -> None:
    tree = consent_tree(db, user)
    first = ingest(engine, *opens(tree, n=3), click(tree))
    seen, after = follow(client, headers)
    assert seen == first
    assert page(client, headers, after=after)["items"] == []
    later = ingest(engine, *opens(tree, "anonymous", n=2), *opens(tree, "off"))
    seen, _ = follow(client, headers, after)
    assert seen == later[:2], "the `off` contact's load made no event"


def test_the_ingest_numbers_its_events_as_it_stores_them(
    client: TestClient, db: Session, engine: Engine, user: User, headers: dict[str, str]
) -> None:
    """The events of a batch carry their `seq` from the commit on, in the batch's order and
    within `last_seq`: the feed reads them with no sequencer run in between."""
    tree = consent_tree(db, user)
    stored = ingest(engine, *opens(tree, n=3), click(tree))
    with engine.connect() as conn:
        rows = conn.execute(select(Event.event_id, Event.seq).where(Event.owner_id == user.id).order_by(Event.id)).all()
        last = sequence.last_seq(conn)
    assert [row.event_id for row in rows] == stored
    seqs = [row.seq for row in rows]
    assert None not in seqs, seqs
    assert seqs == sorted(seqs), seqs
    assert seqs[-1] <= last, (seqs, last)
    assert follow(client, headers)[0] == stored


@pytest.mark.skipif("config.getoption('--db') != 'mysql'", reason="two concurrent writers: MariaDB leg")
def test_a_batch_numbers_its_events_after_an_earlier_writer_commits(
    client: TestClient, db: Session, engine: Engine, user: User, headers: dict[str, str]
) -> None:
    """A batch stored while another transaction holds the sequence (it took numbers, not yet
    committed) waits for that commit and numbers its events after it: nothing is numbered twice
    (INSERT IGNORE would drop the second), and the feed, read meanwhile, sees neither until then."""
    tree = consent_tree(db, user)
    _, after = follow(client, headers)
    slow = engine.connect()
    slow_tx = slow.begin()
    base = sequence.reserve(slow, 1)
    slow.execute(
        insert(Event).values(
            event_id="slow-writer",
            seq=base + 1,
            type="open",
            owner_id=user.id,
            campaign_id=tree["campaign"].id,
            group_id=tree["group"].id,
            client="browser",
            reason="",
            occurred_at=tree["campaign"].created_at,
        )
    )
    stored: list[str] = []
    writer = threading.Thread(target=lambda: stored.extend(ingest(engine, *opens(tree, n=2))))
    writer.start()
    # The batch in its locking read of the sequence, which `slow` holds: waiting for it. (Not
    # INNODB_TRX: InnoDB refreshes that table only once nobody has read it for 0.1 s, so a poll
    # every 10 ms, or another test run's, kept reading a copy from before the wait began.)
    waiting = text(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND ID != :slow"
        " AND INFO LIKE '%FROM event_sequence%FOR UPDATE%'"
    )
    slow_id = slow.connection.dbapi_connection.thread_id()  # type: ignore[union-attr]
    try:
        with engine.connect() as conn:
            wait_until(
                lambda: conn.scalar(waiting, {"slow": slow_id}), "the batch waiting for the sequence", timeout=20
            )
        assert follow(client, headers, after)[0] == []
    except BaseException:
        slow_tx.rollback()  # the batch goes on, and the test's clean-up is not left waiting
        raise
    slow_tx.commit()
    slow.close()
    writer.join(timeout=30)
    assert not writer.is_alive()
    assert follow(client, headers, after)[0] == ["slow-writer", *stored]


def test_an_event_committed_late_is_not_skipped(
    client: TestClient, db: Session, engine: Engine, user: User, headers: dict[str, str]
) -> None:
    """A row with a lower id that becomes visible after higher ones were read (a transaction that
    committed late) still comes, after them: the feed follows `seq` (commit order), not `id`. The
    row is written without `seq`, as a worker from before `sequence.reserve` writes them during an
    upgrade: the sequencer numbers it."""
    tree = consent_tree(db, user)
    (spacer,) = ingest(engine, *opens(tree))
    early = ingest(engine, *opens(tree, n=2))
    with engine.begin() as conn:  # free an id below the others
        low = conn.scalar(select(Event.id).where(Event.event_id == spacer))
        conn.execute(delete(Event).where(Event.id == low))
    seen, after = follow(client, headers)
    assert seen == early
    with engine.begin() as conn:  # the late commit: the lower id appears now
        conn.execute(
            insert(Event).values(
                id=low,
                event_id="late-commit-event",
                type="open",
                owner_id=user.id,
                campaign_id=tree["campaign"].id,
                group_id=tree["group"].id,
                contact_id=tree["contacts"]["full"].id,
                target_id=tree["pixels"]["full"].id,
                client="browser",
                reason="",
                occurred_at=tree["campaign"].created_at,
            )
        )
    seen, _ = follow(client, headers, after)
    assert seen == ["late-commit-event"]


@pytest.mark.skipif("config.getoption('--db') != 'mysql'", reason="two concurrent writers: MariaDB leg")
def test_concurrent_transactions_committing_out_of_order(
    client: TestClient, db: Session, engine: Engine, user: User, headers: dict[str, str]
) -> None:
    """Rows written without `seq` (a worker from before `sequence.reserve`, during an upgrade) by
    two transactions committing out of id order: the sequencer numbers them in commit order."""
    tree = consent_tree(db, user)
    _, after = follow(client, headers)
    values = {
        "type": "open",
        "owner_id": user.id,
        "campaign_id": tree["campaign"].id,
        "group_id": tree["group"].id,
        "client": "browser",
        "reason": "",
        "occurred_at": tree["campaign"].created_at,
    }
    slow = engine.connect()
    slow_tx = slow.begin()
    slow.execute(insert(Event).values(event_id="slow", **values))  # the lower id, not committed
    with engine.begin() as conn:
        conn.execute(insert(Event).values(event_id="fast", **values))
    seen, after = follow(client, headers, after)
    assert seen == ["fast"]
    slow_tx.commit()
    slow.close()
    seen, _ = follow(client, headers, after)
    assert seen == ["slow"]
    with engine.connect() as conn:
        ids: dict[str, int] = {row[0]: row[1] for row in conn.execute(text("SELECT event_id, id FROM events"))}
        assert ids["slow"] < ids["fast"]


def test_cursors_are_tamper_proof_and_personal(
    client: TestClient, db: Session, engine: Engine, user: User, headers: dict[str, str], other_headers: dict[str, str]
) -> None:
    ingest(engine, *opens(consent_tree(db, user)))
    mine = page(client, headers)["next"]
    _body, mac = mine.split(".")
    forged_body = base64.urlsafe_b64encode(b"v1.1.0").rstrip(b"=").decode()
    for bad in (
        f"{forged_body}.{mac}",
        mine[:-2] + ("AA" if not mine.endswith("AA") else "BB"),
        "garbage",
        "a.b.c",
        "",
    ):
        if bad:
            assert_error(client.get("/api/v1/events", params={"after": bad}, headers=headers), 422, "validation_error")
    assert_error(client.get("/api/v1/events", params={"after": mine}, headers=other_headers), 422, "validation_error")


def test_cursors_follow_the_fernet_key_rotation(settings: Settings) -> None:
    issued = cursor.encode(settings, 7, 42)
    rotated = settings.model_copy(
        update={
            "fernet_key": SecretStr(Fernet.generate_key().decode()),
            "fernet_old_keys": SecretStr(settings.fernet_keys()[0]),
        }
    )
    assert cursor.decode(rotated, issued, 7) == 42
    retired = settings.model_copy(
        update={"fernet_key": SecretStr(Fernet.generate_key().decode()), "fernet_old_keys": None}
    )
    with pytest.raises(cursor.BadCursor):
        cursor.decode(retired, issued, 7)


def test_scope_owner_and_admins_all(
    client: TestClient,
    db: Session,
    engine: Engine,
    user: User,
    admin: User,
    headers: dict[str, str],
    other_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    mine = ingest(engine, *opens(consent_tree(db, user)))
    admins = ingest(engine, *opens(consent_tree(db, admin)))
    assert follow(client, headers)[0] == mine
    assert follow(client, other_headers)[0] == []
    assert follow(client, admin_headers)[0] == admins
    assert follow(client, admin_headers, all="true")[0] == mine + admins
    assert_error(client.get("/api/v1/events", params={"all": "true"}, headers=headers), 403, "admin_required")


def test_filters_and_consent(
    client: TestClient, db: Session, engine: Engine, user: User, headers: dict[str, str]
) -> None:
    tree, other = consent_tree(db, user), consent_tree(db, user)
    ids = ingest(engine, *opens(tree), click(tree), click(tree, "anonymous"), *opens(other))
    assert follow(client, headers, types="click")[0] == ids[1:3]
    assert follow(client, headers, campaign_id=other["campaign"].id)[0] == ids[3:]
    assert follow(client, headers, types="open,click", campaign_id=tree["campaign"].id)[0] == ids[:3]
    assert_error(client.get("/api/v1/events", params={"types": "opens"}, headers=headers), 422, "validation_error")
    assert_error(client.get("/api/v1/events", params={"limit": 1001}, headers=headers), 422, "validation_error")
    items = {item["id"]: item for item in page(client, headers, limit=1000)["items"]}
    assert items[ids[0]]["email"] == tree["contacts"]["full"].email
    assert set(items[ids[2]]) == {
        "id",
        "type",
        "occurred_at",
        "campaign_id",
        "group_id",
        "client",
        "machine",
        "reason",
        "link_id",
        "url",
    }


def test_erasure_reaches_the_feed(
    client: TestClient, db: Session, engine: Engine, user: User, headers: dict[str, str]
) -> None:
    tree = consent_tree(db, user)
    ids = ingest(engine, *opens(tree, "full"), *opens(tree, "anonymous"))
    assert follow(client, headers)[0] == ids
    assert client.delete(f"/api/v1/contacts/{tree['contacts']['full'].id}", headers=headers).status_code == 204
    assert follow(client, headers)[0] == ids[1:]
    assert client.delete(f"/api/v1/campaigns/{tree['campaign'].id}", headers=headers).status_code == 204
    assert follow(client, headers)[0] == []
    with engine.connect() as conn:
        assert conn.scalar(select(Event.id)) is None
    assert sequence.assign(engine) == 0


def test_following_the_feed_while_events_are_stored_sees_each_once(
    client: TestClient, db: Session, engine: Engine, user: User, headers: dict[str, str]
) -> None:
    """Two ingesters store batches while a reader follows `next`: at the end it has seen every
    stored event exactly once (commit order, never a skip or a repeat)."""
    tree = consent_tree(db, user)
    stored: list[str] = []
    errors: list[BaseException] = []

    def ingester() -> None:
        try:
            for _ in range(8):
                stored.extend(ingest(engine, *opens(tree, n=10), click(tree)))
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=ingester) for _ in range(2)]
    for thread in threads:
        thread.start()
    seen: list[str] = []
    after: str | None = None
    while any(thread.is_alive() for thread in threads):
        body = page(client, headers, limit=7, **({"after": after} if after else {}))
        seen += [item["id"] for item in body["items"]]
        after = body["next"]
    for thread in threads:
        thread.join()
    assert not errors
    rest, _ = follow(client, headers, after)
    seen += rest
    assert len(seen) == len(set(seen)), "no event twice"
    assert sorted(seen) == sorted(stored), "every stored event, none invented"
