"""One transaction per API request (issue #11, item 2; docs/transactions.md): services only
flush, `app.routing.TransactionRoute` commits once the endpoint has returned and rolls back on
any error, a deadlock at the commit runs the request again, and no service or router commits."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.deps import CurrentUser, SessionDep
from app.errors import Conflict
from app.main import create_app
from app.models import User
from app.routing import TransactionRoute, after_commit
from app.services import users
from app.settings import Settings
from tests.helpers import assert_error, count
from tests.support.app_state import app_state

ROOT = Path(__file__).resolve().parent.parent

# Modules under app/services and app/routers that may end a transaction themselves. Today none:
# the batched purge (services/retention.py) commits each batch through `engine.begin()` and the
# ingest (tracking/ingest.py, outside these folders) its batch through `app.db.read_committed`.
MAY_COMMIT: dict[str, str] = {
    "app/services/webhooks.py": "the test ping ends the request's reads before calling the receiver "
    "(no SQLite write lock held while it answers; docs/transactions.md)",
}


class _Runs:
    def __init__(self) -> None:
        self.endpoint = 0
        self.after_commit: list[bool] = []  # per callback: was the row visible to another session?


@pytest.fixture
def half_way(settings: Settings, engine: Engine) -> Iterator[tuple[TestClient, _Runs]]:
    """The app plus test-only routes whose service call succeeds (flushed) before they fail."""
    runs = _Runs()
    router = APIRouter(prefix="/test-only", route_class=TransactionRoute)

    def _create(db: Session, username: str) -> User:
        return users.create_user(db, username=username, email=f"{username}@example.com", password="p" * 20)

    @router.post("/fails-after-a-flush", status_code=201)
    def fails_after_a_flush(user: CurrentUser, db: SessionDep) -> dict[str, Any]:
        runs.endpoint += 1
        created = _create(db, "half-way")
        assert created.id is not None  # flushed: the row is in the transaction
        raise Conflict("Too late.", code="late")

    @router.post("/creates", status_code=201)
    def creates(user: CurrentUser, db: SessionDep, request: Request) -> dict[str, Any]:
        runs.endpoint += 1
        created = _create(db, "whole")

        async def seen() -> None:
            with Session(engine) as other:
                runs.after_commit.append(other.scalar(select(User.id).where(User.username == "whole")) is not None)

        after_commit(request, seen)
        return {"id": created.id}

    app: FastAPI = create_app(settings)
    app.include_router(router)
    with TestClient(app) as client:
        yield client, runs


def test_a_request_that_fails_after_its_service_flushed_leaves_nothing(
    half_way: tuple[TestClient, _Runs], db: Session, headers: dict[str, str]
) -> None:
    client, runs = half_way
    assert_error(client.post("/test-only/fails-after-a-flush", headers=headers), 409, "late")
    assert runs.endpoint == 1
    assert count(db, User, username="half-way") == 0


def test_the_request_commits_once_it_has_answered_and_only_then_runs_after_commit_work(
    half_way: tuple[TestClient, _Runs], db: Session, headers: dict[str, str]
) -> None:
    client, runs = half_way
    response = client.post("/test-only/creates", headers=headers)
    assert response.status_code == 201, response.text
    assert count(db, User, username="whole") == 1
    assert runs.after_commit == [True]


def test_a_deadlock_at_the_commit_runs_the_request_again(
    half_way: tuple[TestClient, _Runs], db: Session, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, runs = half_way
    dialect = app_state(client).engine.dialect
    commits: list[int] = []
    real_commit = dialect.do_commit

    def do_commit(dbapi_connection: Any) -> None:
        commits.append(1)
        if len(commits) == 1:  # as InnoDB answers a victim at COMMIT time: rolled back, 1213
            dbapi_connection.rollback()
            raise dialect.loaded_dbapi.OperationalError(1213, "Deadlock found when trying to get lock")
        real_commit(dbapi_connection)

    monkeypatch.setattr(dialect, "do_commit", do_commit)
    response = client.post("/test-only/creates", headers=headers)
    monkeypatch.undo()
    assert response.status_code == 201, response.text
    assert runs.endpoint == 2  # the run whose commit deadlocked, then the one that committed
    assert count(db, User, username="whole") == 1
    assert runs.after_commit == [True]  # after the commit that stuck, not the one that failed


def _python_files(*folders: str) -> Iterator[Path]:
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def test_no_service_or_router_ends_a_transaction() -> None:
    ending = re.compile(r"\.(commit|rollback)\(")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _python_files("app/services", "app/routers")
        if str(path.relative_to(ROOT)) not in MAY_COMMIT
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if ending.search(line)
    ]
    assert offenders == [], "services flush; the request (app/routing.py) or session_scope commits"


def test_the_documented_exceptions_still_own_their_transactions() -> None:
    assert "engine.begin()" in (ROOT / "app/services/retention.py").read_text(encoding="utf-8")
    assert "with read_committed(engine) as conn:" in (ROOT / "app/tracking/ingest.py").read_text(encoding="utf-8")
    # The render and the send sheet: one transaction per chunk of contacts, committed before it streams.
    assert "with session_scope(self.factory) as db:" in (ROOT / "app/services/sendprep.py").read_text(encoding="utf-8")
