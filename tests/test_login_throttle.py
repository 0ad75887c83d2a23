"""Failed-login throttle bypasses (issue #10, item 3).

(a) the count is taken atomically before the password check: parallel attempts never check
    more than LOGIN_MAX_FAILURES passwords (real uvicorn server, with and without Redis);
(b) one normalised username for lookup and throttle key (`gina `, `GINA`, full-width);
(c) X-Forwarded-For is trusted only from FORWARDED_ALLOW_IPS (default: nobody);
and a deactivated account with the right password answers exactly like a wrong password.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.main import create_app, create_asgi
from app.settings import Settings
from tests import factories
from tests.helpers import assert_error
from tests.live import live_server
from tests.support.processes import free_port, stop_process, wait_until

# Fixed windows (minutes): a clock that stands still, so no test straddles two (tests/support/clock.py).
pytestmark = pytest.mark.usefixtures("still_windows")

PARALLEL = 60
LIMIT = 5


def _post_in_parallel(base: str, username: str, password: str, n: int) -> list[int]:
    async def run() -> list[int]:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60.0) as http:
            responses = await asyncio.gather(
                *(http.post("/auth/token", data={"username": username, "password": password}) for _ in range(n))
            )
        return [r.status_code for r in responses]

    return asyncio.run(run())


@pytest.mark.processes
@pytest.mark.parametrize("store", ["in-process", "redis"])
def test_parallel_wrong_passwords_check_at_most_the_limit(
    settings: Settings, engine: Engine, db: Session, store: str, request: pytest.FixtureRequest
) -> None:
    factories.make_user(db, username="target")
    overrides: dict[str, Any] = {"login_max_failures": LIMIT, "login_failure_window_seconds": 600}
    if store == "redis":
        request.getfixturevalue("redis_client")  # an empty private redis-server
        overrides["redis_url"] = request.getfixturevalue("redis_url")
        # This test is about the throttle's atomicity in Redis, not the circuit breaker: 60 logins at
        # once on a busy machine can hold a reply past the default 0.5 s call timeout, and the breaker
        # would then (by design) count in process (tests/test_redis_faults.py covers that).
        overrides["redis_call_timeout_seconds"] = 20
    app = create_app(settings.model_copy(update=overrides))
    with live_server(app) as base:
        statuses = _post_in_parallel(base, "target", "wrong-password-0", PARALLEL)
        assert sorted(set(statuses)) == [401, 429], statuses
        assert statuses.count(401) == LIMIT  # exactly LIMIT passwords were checked
        assert statuses.count(429) == PARALLEL - LIMIT
        right = httpx.post(f"{base}/auth/token", data={"username": "target", "password": factories.PASSWORD})
        assert_error(right, 429, "rate_limited")


def _login(client: TestClient, username: str, password: str = factories.PASSWORD) -> Any:
    return client.post("/auth/token", data={"username": username, "password": password})


@pytest.mark.parametrize("variant", ["gina ", " gina", "GINA", "Gina\t", "\uff47\uff49\uff4e\uff41", "gina\u00a0"])
def test_username_variants_are_the_same_user_and_share_the_throttle(
    settings: Settings, engine: Engine, db: Session, variant: str
) -> None:
    gina = factories.make_user(db, username="gina")
    with TestClient(create_asgi(settings.model_copy(update={"login_max_failures": 3}))) as client:
        ok = _login(client, variant)
        assert ok.status_code == 200, ok.text
        me = client.get("/auth/me", headers={"Authorization": f"Bearer {ok.json()['access_token']}"})
        assert (me.json()["id"], me.json()["username"]) == (gina.id, "gina")

        assert [_login(client, variant, "wrong-password").status_code for _ in range(2)] == [401, 401]
        assert _login(client, "gina", "wrong-password").status_code == 401
        # Three failures under three spellings are three failures of one user: blocked.
        assert_error(_login(client, "gina"), 429, "rate_limited")
        assert_error(_login(client, variant), 429, "rate_limited")


def test_deactivated_user_with_the_right_password_answers_like_a_wrong_password(
    client: TestClient, db: Session
) -> None:
    factories.make_user(db, username="sleepy", is_active=False)
    factories.make_user(db, username="awake")
    right = _login(client, "sleepy")
    wrong = _login(client, "awake", "wrong-password")
    unknown = _login(client, "nobody-at-all")
    for response in (right, wrong, unknown):
        assert_error(response, 401, "invalid_credentials")
    assert right.json() == wrong.json() == unknown.json()
    assert right.headers.get("www-authenticate") == wrong.headers.get("www-authenticate") == "Bearer"


def test_a_deactivated_login_counts_as_a_failure(settings: Settings, engine: Engine, db: Session) -> None:
    factories.make_user(db, username="dormant", is_active=False)
    with TestClient(create_asgi(settings.model_copy(update={"login_max_failures": 2}))) as client:
        assert [_login(client, "dormant").status_code for _ in range(2)] == [401, 401]
        assert_error(_login(client, "dormant"), 429, "rate_limited")


# (c) proxy headers: a real `pixeltrack serve`, so that its uvicorn arguments are what is tested.

PIXELTRACK = Path(sys.executable).with_name("pixeltrack")
_OUR_VARIABLES: tuple[str, ...] = (
    "MYSQL_",
    "REDIS_",
    "API_",
    "FERNET",
    "FIRST_ADMIN",
    "DATABASE_URL",
    "APP_ENV",
    "SECRETS_FILE",
)
_OUR_VARIABLES += ("SQLITE_PATH", "PUBLIC_BASE_URL", "LOGIN_", "FORWARDED_ALLOW_IPS", "RATE_LIMIT", "LOG_LEVEL")


def _serve(tmp_path: Path, **variables: str) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(_OUR_VARIABLES)}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'proxy.db'}",
        APP_ENV="development",
        API_SECRET_KEY="proxy-test-secret-" + "p" * 40,
        FERNET_KEY=Fernet.generate_key().decode(),
        FIRST_ADMIN_USERNAME="proxied",
        FIRST_ADMIN_PASSWORD=factories.PASSWORD,
        LOGIN_MAX_FAILURES="3",
        **variables,
    )
    port = free_port()
    proc = subprocess.Popen(
        [str(PIXELTRACK), "serve", "--host", "127.0.0.1", "--port", str(port), "--no-sample"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert proc.poll() is None, f"serve exited with {proc.returncode}"
        try:
            return httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(healthy, "pixeltrack serve to answer /healthz", timeout=90.0, interval=0.1)
    except BaseException:
        stop_process(proc)
        raise
    return proc, base


def _attempt(base: str, forwarded_for: str, password: str) -> int:
    response = httpx.post(
        f"{base}/auth/token",
        data={"username": "proxied", "password": password},
        headers={"X-Forwarded-For": forwarded_for},
        timeout=30.0,
    )
    return response.status_code


@pytest.mark.processes
def test_forwarded_for_from_an_untrusted_peer_does_not_change_the_throttle_key(tmp_path: Path) -> None:
    """Default (FORWARDED_ALLOW_IPS unset): a client on 127.0.0.1 cannot pose as other IPs."""
    proc, base = _serve(tmp_path)
    try:
        assert [_attempt(base, f"203.0.113.{i}", "wrong-password") for i in range(3)] == [401, 401, 401]
        assert _attempt(base, "198.51.100.7", factories.PASSWORD) == 429
    finally:
        stop_process(proc)


@pytest.mark.processes
def test_forwarded_for_from_a_configured_proxy_is_the_client(tmp_path: Path) -> None:
    proc, base = _serve(tmp_path, FORWARDED_ALLOW_IPS="127.0.0.1")
    try:
        assert [_attempt(base, "203.0.113.1", "wrong-password") for _ in range(3)] == [401, 401, 401]
        assert _attempt(base, "203.0.113.1", factories.PASSWORD) == 429
        assert _attempt(base, "198.51.100.7", factories.PASSWORD) == 200  # another client behind the proxy
    finally:
        stop_process(proc)
