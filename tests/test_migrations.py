"""Alembic owns the schema: it matches the models, round-trips, and declares the cascades.

Local fixture `fresh_url`: a throwaway database of the current leg (a temp SQLite file, or a
new MariaDB database created with a latin1 default so that the utf8mb4 table options must come
from the migration itself), dropped afterwards.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, Table, delete, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.db import make_engine, make_sessionmaker
from app.migrations import alembic_config, upgrade
from app.models import Base, Campaign, Click, User
from tests import factories
from tests.helpers import counter_snapshot, snapshot_diff
from tests.support.private_db import server_database

DEFAULT_MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4"
APP_TABLES = {t.name for t in Base.metadata.sorted_tables}
ROOT = Path(__file__).resolve().parent.parent  # the repository (alembic.ini, alembic/)

# Deleting a parent deletes its children (child table, referred table).
CASCADING = {
    ("campaigns", "users"),
    ("groups", "campaigns"),
    ("contacts", "campaigns"),
    ("contacts", "groups"),
    ("pixels", "contacts"),
    ("openings", "pixels"),
    ("links", "campaigns"),
    ("clicks", "links"),
    ("clicks", "contacts"),
}


def _diff(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "render_as_batch": conn.dialect.name == "sqlite",
            },
        )
        return list(compare_metadata(context, Base.metadata))


def _app_tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def _downgrade(engine: Engine, revision: str = "base") -> None:
    cfg = alembic_config()
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)


def _current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _head() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"several Alembic heads: {heads}"
    return heads[0]


@pytest.fixture
def fresh_url(db_leg: str, tmp_path: Path, engine: Engine) -> Iterator[str]:
    """A brand-new empty database of the current leg (the session `engine` proves it is reachable)."""
    if db_leg == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    server = make_url(os.environ.get("TEST_MYSQL_URL", DEFAULT_MYSQL_URL))
    with server_database(server, "pixeltrack_migr", "latin1 COLLATE latin1_swedish_ci") as url:
        yield url


@pytest.fixture
def fresh_engine(fresh_url: str) -> Iterator[Engine]:
    eng = make_engine(fresh_url)
    yield eng
    eng.dispose()


# The migrated schema is exactly the models.


def test_autogenerate_against_models_is_empty(engine: Engine) -> None:
    assert _diff(engine) == []


def test_one_head_and_the_test_database_is_at_it(engine: Engine) -> None:
    assert _current(engine) == _head()
    assert _app_tables(engine) == APP_TABLES


def test_upgrade_head_twice_is_a_no_op(engine: Engine) -> None:
    upgrade(engine)
    assert _current(engine) == _head()
    assert _diff(engine) == []


def test_downgrade_base_then_upgrade_head_on_a_fresh_database(fresh_engine: Engine) -> None:
    assert _app_tables(fresh_engine) == set()
    upgrade(fresh_engine)
    assert _app_tables(fresh_engine) == APP_TABLES
    assert _current(fresh_engine) == _head()
    # Some data, so that the downgrade has to drop tables that hold rows (FKs in the way).
    with Session(fresh_engine) as db:
        factories.make_tree(db, factories.make_user(db, username="migr"))

    _downgrade(fresh_engine, "base")
    assert _app_tables(fresh_engine) == set()
    assert _current(fresh_engine) is None

    upgrade(fresh_engine)
    assert _app_tables(fresh_engine) == APP_TABLES
    assert _current(fresh_engine) == _head()
    assert _diff(fresh_engine) == []
    with fresh_engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(User)) == 0


def test_every_revision_steps_down_and_up(fresh_engine: Engine) -> None:
    script = ScriptDirectory.from_config(alembic_config())
    revisions = [rev.revision for rev in script.walk_revisions("base", "heads")]  # newest first
    upgrade(fresh_engine)
    for revision in revisions:
        assert _current(fresh_engine) == revision
        _downgrade(fresh_engine, "-1")
    assert _app_tables(fresh_engine) == set()
    for revision in reversed(revisions):
        upgrade(fresh_engine, revision)
        assert _current(fresh_engine) == revision
    assert _diff(fresh_engine) == []


@pytest.mark.processes
def test_alembic_command_line_round_trip(fresh_url: str, fresh_engine: Engine) -> None:
    alembic = Path(sys.executable).with_name("alembic")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL_", "DATABASE_URL"))}

    def run(*args: str) -> str:
        result = subprocess.run(
            [str(alembic), "-x", f"url={fresh_url}", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout + result.stderr

    run("upgrade", "head")
    assert _app_tables(fresh_engine) == APP_TABLES
    assert _head() in run("current")
    run("downgrade", "base")
    assert _app_tables(fresh_engine) == set()
    run("upgrade", "head")
    assert _app_tables(fresh_engine) == APP_TABLES
    assert _diff(fresh_engine) == []


# MariaDB table options.


def _mysql_tables(engine: Engine) -> dict[str, tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT table_name, engine, table_collation FROM information_schema.tables "
                "WHERE table_schema = DATABASE()"
            )
        ).all()
    return {name: (eng, collation) for name, eng, collation in rows if name != "alembic_version"}


@pytest.mark.mysql_only
@pytest.mark.parametrize("which", ["test-database", "fresh-latin1-database"])
def test_mariadb_tables_are_innodb_utf8mb4_bin(engine: Engine, fresh_engine: Engine, which: str) -> None:
    target = engine
    if which == "fresh-latin1-database":
        upgrade(fresh_engine)
        target = fresh_engine
    tables = _mysql_tables(target)
    assert set(tables) == APP_TABLES
    assert all(options == ("InnoDB", "utf8mb4_bin") for options in tables.values()), tables
    with target.connect() as conn:
        columns = conn.execute(
            text(
                "SELECT table_name, column_name, character_set_name, collation_name FROM information_schema.columns "
                "WHERE table_schema = DATABASE() AND character_set_name IS NOT NULL AND table_name <> 'alembic_version'"
            )
        ).all()
    assert columns, "no text columns found"
    wrong = [c for c in columns if (c[2], c[3]) != ("utf8mb4", "utf8mb4_bin")]
    assert wrong == []


@pytest.mark.mysql_only
def test_mariadb_stores_four_byte_characters_and_compares_binary(fresh_engine: Engine) -> None:
    upgrade(fresh_engine)
    with Session(fresh_engine) as db:
        owner = factories.make_user(db, username="utf8")
        for name in ("😀", "é", "e\u0301", "A", "a"):
            factories.make_campaign(db, owner, name=name)
    with fresh_engine.connect() as conn:
        assert conn.scalar(select(func.count()).where(Campaign.name == "a")) == 1
        assert conn.scalar(select(func.count()).where(Campaign.name == "é")) == 1
        assert conn.scalar(select(Campaign.name).where(Campaign.name == "😀")) == "😀"


# Foreign keys: deleting a parent deletes its children.


def _declared_fks() -> dict[tuple[str, str], str | None]:
    return {
        (fk.parent.table.name, fk.column.table.name): fk.ondelete
        for table in Base.metadata.sorted_tables
        for fkc in table.foreign_key_constraints
        for fk in fkc.elements[:1]
    }


def test_models_declare_cascades_where_the_spec_says_so() -> None:
    declared = _declared_fks()
    missing = CASCADING - set(declared)
    assert missing == set(), f"foreign keys missing from the models: {missing}"
    not_cascading = {pair: declared[pair] for pair in CASCADING if (declared[pair] or "").upper() != "CASCADE"}
    assert not_cascading == {}


def test_every_model_foreign_key_says_what_happens_on_delete() -> None:
    """No FK is left to the default (RESTRICT), which would make a parent undeletable (a 500)."""
    assert {pair: ondelete for pair, ondelete in _declared_fks().items() if not ondelete} == {}


def test_database_foreign_keys_cascade(engine: Engine) -> None:
    inspector = inspect(engine)
    reflected = {
        (table, fk["referred_table"]): (fk.get("options") or {}).get("ondelete")
        for table in APP_TABLES
        for fk in inspector.get_foreign_keys(table)
    }
    not_cascading = {
        pair: reflected.get(pair) for pair in CASCADING if (reflected.get(pair) or "").upper() != "CASCADE"
    }
    assert not_cascading == {}


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t.name: conn.scalar(select(func.count()).select_from(t)) or 0 for t in Base.metadata.sorted_tables}


def _tree_with_click(db: Session, owner: User) -> dict[str, Any]:
    tree = factories.make_tree(db, owner)
    db.add(
        Click(
            link_id=tree["link"].id,
            contact_id=tree["contact"].id,
            campaign_id=tree["campaign"].id,
            clicked_at=datetime.now(UTC),
            event_id=uuid.uuid4().hex,
        )
    )
    db.commit()
    return tree


@pytest.mark.counters_unchecked  # plain SQL deletes bypass the services that keep the counters
@pytest.mark.parametrize(
    ("parent", "gone", "kept"),
    [
        ("user", {"campaigns", "groups", "contacts", "pixels", "openings", "links", "clicks"}, set()),
        ("campaign", {"campaigns", "groups", "contacts", "pixels", "openings", "links", "clicks"}, set()),
        ("group", {"groups", "contacts", "pixels", "openings", "clicks"}, {"campaigns", "links"}),
        ("contact", {"contacts", "pixels", "openings", "clicks"}, {"campaigns", "groups", "links"}),
        ("pixel", {"pixels", "openings"}, {"campaigns", "groups", "contacts", "links", "clicks"}),
        ("link", {"links", "clicks"}, {"campaigns", "groups", "contacts", "pixels", "openings"}),
    ],
)
def test_database_level_delete_cascades(
    engine: Engine, db: Session, parent: str, gone: set[str], kept: set[str]
) -> None:
    """A plain SQL DELETE (no ORM cascade involved) removes exactly the children of the parent."""
    owner = factories.make_user(db, username="cascade_owner")
    tree = _tree_with_click(db, owner)
    other = _tree_with_click(db, factories.make_user(db, username="bystander"))
    before = _counts(engine)
    target = owner if parent == "user" else tree[parent]
    table = cast(Table, type(target).__table__)  # a mapped class's table (typed as any FromClause)
    with engine.begin() as conn:
        conn.execute(delete(table).where(table.c.id == target.id))
    after = _counts(engine)
    for name in gone:
        assert after[name] == before[name] - 1, (name, before, after)
    for name in kept:
        assert after[name] == before[name], (name, before, after)
    # The other user's tree is untouched.
    db.expire_all()
    assert db.get(type(other["opening"]), other["opening"].id) is not None
    assert db.scalar(select(func.count()).select_from(Click).where(Click.link_id == other["link"].id)) == 1


def test_counter_migrations_fill_what_the_services_keep(fresh_engine: Engine) -> None:
    """0003/0004/0007 backfill the report counters of the rows already there: the same values the
    services maintained (two groups, several pixels, every kind of opening, human, machine and
    unknown clicks, a click without an opening, a contact never opening, one without a reference
    time)."""
    upgrade(fresh_engine)
    at = datetime(2026, 3, 2, 8, 0, 0, 250000, tzinfo=UTC)
    with make_sessionmaker(fresh_engine)() as db:  # the app's sessions: the counters move with the rows
        campaign = factories.make_campaign(db, factories.make_user(db))
        link = factories.make_link(db, campaign)
        for g in range(2):
            group = factories.make_group(db, campaign)
            for c in range(3):
                sent = {"status": "sent", "sent_at": at} if c < 2 else {}
                contact = factories.make_contact(db, group, scheduled_at=at if c < 2 else None, **sent)
                pixels = [factories.make_pixel(db, contact, number) for number in range(1, 2 + c % 2)]
                for i, client in enumerate(["browser", "apple_mpp", "bot", "unknown"][: g + c + 1]):
                    factories.make_opening(
                        db, pixels[i % len(pixels)], client=client, opened_at=at + timedelta(hours=i)
                    )
                if c == 1:
                    factories.make_click(db, link, contact, clicked_at=at + timedelta(minutes=90))
                for client in [("browser", "scanner"), ("browser",), ("bot", "browser", "unknown")][c][: g + 1]:
                    factories.make_click(db, link, contact, client=client, clicked_at=at + timedelta(minutes=c))
            inferred = factories.make_contact(db, group, status="sent", sent_at=at)  # a click, no opening
            factories.make_click(db, link, inferred, client="browser", clicked_at=at)
    with fresh_engine.connect() as conn:
        kept = counter_snapshot(conn)
    assert {table: len(rows) for table, rows in kept.items()} == {"contact": 8, "group": 2, "hour": 4}
    assert all(row[-5:] != (0, 0, 0, 0, 0) for row in kept["group"].values())  # human_clicks ... human_clickers

    _downgrade(fresh_engine, "0006")
    upgrade(fresh_engine)
    with fresh_engine.connect() as conn:
        assert snapshot_diff(kept, counter_snapshot(conn)) == []
    _downgrade(fresh_engine, "0002")
    assert not {"contact_stats", "group_counts", "campaign_hours"} & _app_tables(fresh_engine)
    upgrade(fresh_engine)
    with fresh_engine.connect() as conn:
        assert snapshot_diff(kept, counter_snapshot(conn)) == []


# Migrations only.


def _create_all_uses(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node.lineno
        for node in ast.walk(tree)
        if (isinstance(node, ast.Attribute) and node.attr == "create_all")
        or (isinstance(node, ast.Name) and node.id == "create_all")
    ]


def test_app_never_calls_create_all() -> None:
    """The schema comes from Alembic only (a docstring may say so; code may not do it)."""
    offenders = {
        str(path.relative_to(ROOT)): lines
        for path in sorted((ROOT / "app").rglob("*.py"))
        if (lines := _create_all_uses(path))
    }
    assert offenders == {}
    assert (ROOT / "app").is_dir()
    assert len(list((ROOT / "app").rglob("*.py"))) > 10
