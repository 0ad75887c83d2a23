"""`pixeltrack reclassify`: stored rows get the classifier's current verdict (and the report
counters follow, checked by the drift check after the test); facts that are not stored (HEAD,
prefetch) and classes set through the API are kept; a second run changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app import cli
from app.db import make_sessionmaker
from app.models import Click, ContactStats, Opening, User
from app.services.reclassify import reclassify
from app.settings import Settings
from app.tracking.classify import classify
from tests import factories
from tests.support.cli_env import cli_environment

CRAWLER = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"


def _stale_rows(db: Session, user: User) -> dict[str, Any]:
    """Rows stored with classes an older classifier gave, or that must be kept."""
    tree = factories.make_tree(db, user)
    pixel, link, contact = tree["pixel"], tree["link"], tree["contact"]
    rows = {
        "crawler": factories.make_opening(db, pixel, user_agent=CRAWLER, client="browser"),
        "apple": factories.make_opening(db, pixel, ip="17.58.1.2", user_agent=None, client="unknown"),
        "head": factories.make_opening(db, pixel, user_agent=FIREFOX, client="bot", reason="method:HEAD"),
        "manual": factories.make_opening(db, pixel, user_agent=CRAWLER, client="browser", reason="api:manual"),
        "click": factories.make_click(db, link, contact, user_agent=CRAWLER, client="browser"),
        # A browser's click within seconds of the send: a scanner by timing, whatever its agent says.
        "timed": factories.make_click(
            db, link, contact, user_agent=FIREFOX, client="scanner", reason="timing:after-send"
        ),
    }
    return {**tree, **rows}


def _state(db: Session, model: Any) -> dict[int, tuple[str, str]]:
    db.expire_all()
    return {row.id: (row.client, row.reason) for row in db.scalars(select(model))}


def test_reclassify_applies_the_current_classifier_and_keeps_unstored_facts(
    engine: Engine, db: Session, user: User
) -> None:
    rows = _stale_rows(db, user)
    seen: list[tuple[str, int]] = []
    done = reclassify(
        make_sessionmaker(engine), batch_size=2, progress=lambda t, tally: seen.append((t, tally.examined))
    )
    openings = _state(db, Opening)
    assert openings[rows["crawler"].id] == tuple(classify(CRAWLER, None))
    assert openings[rows["crawler"].id][0] == "bot"
    assert openings[rows["apple"].id] == tuple(classify(None, "17.58.1.2"))
    assert openings[rows["apple"].id][0] == "apple_mpp"
    assert openings[rows["head"].id] == ("bot", "method:HEAD")
    assert openings[rows["manual"].id] == ("browser", "api:manual")
    assert _state(db, Click)[rows["click"].id][0] == "bot"
    assert _state(db, Click)[rows["timed"].id] == ("scanner", "timing:after-send")
    assert done["openings"].examined == 5  # the tree's own opening too
    assert done["openings"].changed >= 2
    assert done["clicks"].changed == 1
    assert seen[:3] == [("openings", 2), ("openings", 4), ("openings", 5)]  # batches of 2
    stats = db.scalars(select(ContactStats).where(ContactStats.contact_id == rows["contact"].id)).one()
    assert stats.opens_bot == 2
    assert stats.opens_apple_mpp == 1
    again = reclassify(make_sessionmaker(engine))
    assert (again["openings"].changed, again["clicks"].changed) == (0, 0)  # idempotent


def test_reclassify_one_campaign_leaves_the_others(engine: Engine, db: Session, user: User) -> None:
    mine, other = _stale_rows(db, user), _stale_rows(db, user)
    reclassify(make_sessionmaker(engine), campaign_id=mine["campaign"].id)
    openings = _state(db, Opening)
    assert openings[mine["crawler"].id][0] == "bot"
    assert openings[other["crawler"].id] == ("browser", "")


def test_reclassify_cli(
    engine: Engine,
    db: Session,
    user: User,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = _stale_rows(db, user)
    with cli_environment(monkeypatch, settings):
        assert cli.main(["reclassify", "--batch-size", "0"]) == 2
        assert cli.main(["reclassify", "--campaign", str(rows["campaign"].id)]) == 0
        out = capsys.readouterr().out
        assert "reclassified: " in out
        assert "1 of 2 clicks" in out
    assert _state(db, Click)[rows["click"].id][0] == "bot"
    assert _state(db, Click)[rows["timed"].id] == ("scanner", "timing:after-send")
