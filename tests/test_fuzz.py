"""Fuzzing: schemathesis against the app's own OpenAPI schema, plus the public tracking paths.

- `test_api` runs every operation of the schema (examples, coverage and fuzzing phases,
  positive and negative data) in-process against `create_asgi(settings)` (so `/o/` and `/c/`
  go through the tracking fast path), as a regular user owning one object of each kind
  (tests/factories.py); `test_api_as_admin` runs the users routes and every /api/v1/campaigns…
  route as an admin. Generated path ids are mostly swapped for the ids of real objects, so
  requests reach the handlers instead of stopping at a 404; DELETE gets a fresh tree each time.
- `test_stateful` chains operations through the links schemathesis infers from the schema
  (create → read/update/delete by the returned id, child routes...), each scenario starting
  from the same database.
- Every response must pass schemathesis' checks (no 5xx; status code, content type, headers
  and body as documented; valid data accepted, invalid data refused; auth enforced; `Allow`
  on 405; use after delete...) and `error_shape`: every error is JSON {"detail", "code"}.
- `test_public_*`: random, oversized, non-ASCII, percent-encoded, path-traversal and tampered
  tokens on `/o/{token}.gif`, `/c/{token}` and `/e.gif?pt=` answer 404 with the error shape and
  write nothing.
- `test_rate_limited_answers_are_documented`: the 429 of RATE_LIMIT_PER_MINUTE (off in the
  suite's settings) is documented on every authenticated operation.

Bounded and reproducible: a fixed seed, derandomized Hypothesis, no example database;
MAX_EXAMPLES per operation in the fuzzing phase (the examples and coverage phases add their
own deterministic cases), STATEFUL_SCENARIOS x STATEFUL_STEPS, PUBLIC_EXAMPLES per endpoint.
"""

from __future__ import annotations

import gc
import re
import string
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast
from urllib.parse import quote

import jsonschema_rs
import pytest
import schemathesis
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.python import asgi as st_asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from app.credentials import password_problem
from app.main import create_app, create_asgi
from app.models import Base
from app.models.base import MAX_ID
from app.settings import Settings
from app.tracking.attribution import Attribution
from tests import factories

pytestmark = pytest.mark.slow  # long: not in the fast loop

MAX_EXAMPLES = 20
STATEFUL_SCENARIOS = 50
STATEFUL_STEPS = 12
PUBLIC_EXAMPLES = 150
SEED = 20_240_601

# Rules of valid data that JSON Schema cannot state, taught to the generator so that
# schema-valid data stays valid (`positive_data_acceptance`); the refusals are tested elsewhere.
# - Timestamps: years 1970-9998 once converted to UTC (tests/test_campaigns.py). Generated
#   inside the range with assorted offsets.
_OFFSETS = [timezone(timedelta(minutes=m)) for m in (-720, -330, -1, 0, 1, 345, 840)]
schemathesis.openapi.format(
    "date-time",
    st.builds(
        lambda dt, tz: dt.replace(tzinfo=UTC).astimezone(tz).isoformat(),
        st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9997, 12, 31)),
        st.sampled_from(_OFFSETS),
    ),
)
# - Emails: deliverable domains; email-validator refuses special-use ones (.test, .invalid, ...).
#   And valid to schemathesis' own validator (jsonschema-rs), which refuses a mixed-case IDNA
#   prefix (`p.A.xN--t60b56a`) that email-validator takes: schemathesis then expected a 4xx for a
#   case it had itself generated as valid (CI).
_EMAIL = jsonschema_rs.validator_for({"type": "string", "format": "email"}, validate_formats=True)
schemathesis.openapi.format("email", st.emails().filter(lambda e: len(e) <= 254 and _EMAIL.is_valid(e)))
# - Campaigns: ends_at after starts_at; a contact moves only within its campaign (_valid_body).


CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            # Credentials are ours (World): never generated.
            "with-security-parameters": False,
            "database": "none",
        },
        # `ignored_auth` probes each operation again without credentials and with invalid ones,
        # over HTTP: this schema is loaded from a dict, so its probes have no app or base URL to
        # go to (it only ran once the APIKey bearer scheme gave it a credential to remove). Every
        # route refusing a missing, invalid or revoked JWT or API key is tested in
        # tests/test_api_keys.py (test_every_route_refuses_missing_and_invalid_credentials).
        "checks": {"ignored_auth": {"enabled": False}},
    }
)


def _documented_schema() -> dict[str, Any]:
    """The OpenAPI document /openapi.json serves (it does not depend on the database or the
    settings: test_fuzzed_schema_is_the_served_one). Loaded at import because schemathesis'
    lazy `from_fixture` fails on pytest 9 (it sets the removed `Node._nodeid`)."""
    app = create_app(
        Settings(
            _env_file=None,
            app_env="test",
            database_url="sqlite://",
            api_secret_key="x" * 40,
            fernet_key=Fernet.generate_key().decode(),
            redis_url=None,
            redis_host=None,
        )
    )
    return app.openapi()


schema = schemathesis.openapi.from_dict(_documented_schema(), config=CONFIG)

HYPOTHESIS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def asgi_lifespans() -> Iterator[None]:
    """Apps called through schemathesis run their lifespan in its event loop until this ends."""
    threshold = gc.get_threshold()
    yield
    st_asgi.shutdown_lifespans()
    gc.unfreeze()  # create_asgi tunes the collector for a server process
    gc.set_threshold(*threshold)


@pytest.fixture(scope="module")
def asgi_app(settings: Settings, engine: Engine, asgi_lifespans: None) -> Any:
    """What uvicorn serves, with its lifespan running."""
    app = create_asgi(settings)
    # schemathesis types an ASGI app with dicts where Starlette's types use MutableMapping.
    with st_asgi.get_client(cast(Any, app)):  # starts the lifespan (state.tracker...) now, once
        pass
    return app


def test_fuzzed_schema_is_the_served_one(asgi_app: Any) -> None:
    with st_asgi.get_client(asgi_app) as client:
        served = client.get("/openapi.json").json()
    assert served == _documented_schema()


class World:
    """The objects requests are aimed at, created through tests/factories.py."""

    def __init__(self, db: Session, settings: Settings, engine: Engine) -> None:
        self.db = db
        self.settings = settings
        self.engine = engine
        self.reset()

    def reset(self) -> None:
        """Only this world in the database (stateful scenarios each start from the same state)."""
        with self.engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(delete(table))
        self.db.expire_all()
        self.owner = factories.make_user(self.db)
        self.admin = factories.make_user(self.db, is_admin=True)
        self.owner_headers = factories.headers_for(self.settings, self.owner)
        self.admin_headers = factories.headers_for(self.settings, self.admin)
        self.shared = self._fresh()

    def _fresh(self) -> dict[str, int]:
        ids = {f"{name}_id": obj.id for name, obj in factories.make_tree(self.db, self.owner).items()}
        ids["user_id"] = factories.make_user(self.db).id
        return ids

    def aim(self, case: Any) -> None:
        """Point most generated ids at real objects (ids ≡ 0 mod 7 stay random: the 404 path)."""
        fresh = case.method.upper() == "DELETE" or case.operation.path == "/api/v1/campaigns/{campaign_id}"
        ids = self._fresh() if fresh else self.shared
        for container in (case.path_parameters, case.query):
            for name, value in list((container or {}).items()):
                if name not in ids or isinstance(value, bool):
                    continue
                number = value if isinstance(value, int) else int(value) if str(value).isdigit() else None
                if number is not None and 1 <= number <= MAX_ID and number % 7:
                    container[name] = ids[name] if isinstance(value, int) else str(ids[name])
        if _positive(case) and isinstance(case.body, dict):
            _valid_body(case.body, ids)
        if _positive(case) and case.query:
            _valid_query(case.operation.path, case.query)
        if _positive(case) and case.operation.path.endswith("/stats") and "control" in (case.query or {}):
            case.query["control"] = ids["group_id"]  # a group of the campaign aimed at (another one is a 422)


def _positive(case: Any) -> bool:
    return case.meta is None or case.meta.generation.mode.name == "POSITIVE"


def _timestamp(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _valid_query(path: str, query: dict[str, Any]) -> None:
    """Rules of a valid query string (positive cases only)."""
    if path.endswith("/stats"):
        _valid_stats_query(query)
    if path == "/e.gif":
        _valid_intake_fields(query)
    if path == "/api/v1/events":
        query.pop("after", None)  # a cursor is one the feed gave out (any other string is a 422)
        query.pop("types", None)  # a comma-separated list of event types


def _valid_intake_fields(fields: dict[str, Any]) -> None:
    """POST /e, GET /e.gif: a conversion's value comes with its currency, an ISO 4217 code (not a pattern), and has at
    most 18 digits (JSON Schema has no `maxDigits`)."""
    if fields.get("value") is None and fields.get("currency") is None:
        fields.pop("value", None)
        fields.pop("currency", None)
    else:
        fields["value"], fields["currency"] = "42.5", "EUR"


def _valid_stats_query(query: dict[str, Any]) -> None:
    """A series range must end after it starts and span at most 10,000 buckets."""
    start, end = _timestamp(query.get("from")), _timestamp(query.get("to"))
    step = {"hour": 3600, "day": 86400}.get(query.get("bucket", ""))
    if step is None or start is None or end is None or not 0 < (end - start).total_seconds() <= 9_999 * step:
        query.pop("from", None)
        query.pop("to", None)


def _valid_body(body: dict[str, Any], ids: dict[str, int] | None) -> None:
    """Business rules of a valid body (positive cases only)."""
    if "group_id" in body:  # a contact moves only to a group of its own campaign
        if ids is None:
            del body["group_id"]
        else:
            body["group_id"] = ids["group_id"]
    starts, ends = _timestamp(body.get("starts_at")), _timestamp(body.get("ends_at"))
    if starts is not None and ends is not None and ends <= starts:
        if ends < starts:
            body["starts_at"], body["ends_at"] = body["ends_at"], body["starts_at"]
        else:
            del body["ends_at"]
    password = body.get("password")
    if isinstance(password, str) and password_problem(password) is not None:
        body["password"] = "fuzzed-uncommon-password"  # the schema cannot say "not a common password"
    expires = _timestamp(body.get("expires_at"))
    if expires is not None and expires <= datetime.now(UTC):
        del body["expires_at"]  # an API key's expiry is in the future: the schema cannot say "after now"
    if "group_id" in body and "contact_ids" in body:
        del body["contact_ids"]  # a render selects by group or by ids, not both
    if "url" in body:
        # A webhook's host must resolve to a public address (offline here: a public IP literal).
        body["url"] = "https://93.184.215.14/hooks/pixeltracking"
    if isinstance(body.get("html"), str) and not body["html"].startswith("<p>"):
        # A template has a tag (anything else is "not HTML"). Idempotent, as every rule here: a
        # stateful run may see the same body again.
        body["html"] = "<p>" + body["html"]
    if "pt" in body:  # POST /e
        _valid_intake_fields(body)
    name = body.get("name")
    if isinstance(name, str) and not name.strip():
        body["name"] = "fuzzed name"  # names are stripped, then must not be empty (minLength counts spaces)
    if "conversion_origins" in body:  # exact origins (scheme://host[:port]): more than a pattern says
        body["conversion_origins"] = ["https://shop.example.com"]
    if "token" in body or "contact_id" in body:
        _valid_conversion(body, ids)
    rows = body.get("conversions")
    if isinstance(rows, list):
        for row in rows:
            if isinstance(row, dict):
                _valid_conversion(row, ids)


def _valid_conversion(row: dict[str, Any], ids: dict[str, int] | None) -> None:
    """A conversion names exactly one of token and contact_id (a contact of the caller's, where
    known), a value with its currency (a decimal, an ISO 4217 code), a time not in the future."""
    row.pop("token", None)
    row["contact_id"] = ids["contact_id"] if ids is not None else row.get("contact_id") or 1
    if row.get("value") is None or row.get("currency") is None:
        row.pop("value", None)
        row.pop("currency", None)
    else:
        row["value"], row["currency"] = "12.5", "EUR"
    occurred = _timestamp(row.get("occurred_at"))
    if occurred is not None and occurred > datetime.now(UTC):
        del row["occurred_at"]
    name = row.get("name")
    if not isinstance(name, str) or not name.strip():
        row["name"] = "purchase"


@pytest.fixture
def world(db: Session, settings: Settings, engine: Engine) -> World:
    return World(db, settings, engine)


def error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every error (4xx/5xx) answers JSON {"detail": ..., "code": "<non-empty string>"}."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"error with content-type {content_type!r}"
    if case.method.upper() == "HEAD":
        return None  # the headers of the error; HEAD has no body
    body = response.json()
    assert isinstance(body, dict), f"error body is not an object: {body!r}"
    assert set(body) == {"detail", "code"}, f"error body keys {sorted(body)}, expected ['code', 'detail']"
    assert isinstance(body["code"], str), f"error code is not a string: {body['code']!r}"
    assert body["code"], "empty error code"
    return None


def _run(case: Any, world: World, app: Any, headers: dict[str, str]) -> None:
    world.aim(case)
    case.call_and_validate(
        headers=headers,
        additional_checks=[error_shape],
        app=app,
    )


@schema.parametrize()
@HYPOTHESIS
def test_api(case: Any, world: World, asgi_app: Any) -> None:
    _run(case, world, asgi_app, world.owner_headers)


@schema.include(path_regex=r"^/api/v1/(users|campaigns)").parametrize()
@HYPOTHESIS
def test_api_as_admin(case: Any, world: World, asgi_app: Any) -> None:
    _run(case, world, asgi_app, world.admin_headers)


def test_stateful(world: World, asgi_app: Any) -> None:
    """Scenarios chained through the links schemathesis infers (POST → GET/PATCH/DELETE by id...)."""

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]  # a base class schemathesis builds at run time
        def setup(self) -> None:
            world.reset()

        def before_call(self, case: Any) -> None:
            if _positive(case) and isinstance(case.body, dict):
                _valid_body(case.body, None)
                if case.method.upper() == "PATCH" and len({"starts_at", "ends_at"} & set(case.body)) == 1:
                    # ends_at must stay after starts_at, and the stored other date is not known here
                    case.body.pop("starts_at", None)
                    case.body.pop("ends_at", None)
            if _positive(case) and case.query:
                _valid_query(case.operation.path, case.query)
                case.query.pop("control", None)  # which groups the campaign has is not known here

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            admin = case.operation.path.startswith("/api/v1/users")
            return {"headers": world.admin_headers if admin else world.owner_headers, "app": asgi_app}

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            case.validate_response(
                response,
                additional_checks=[error_shape],
                transport_kwargs=kwargs,
                recorder=self.recorder,
            )

    Workflow.run(
        settings=settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )


# Public tracking endpoints: hostile tokens.

_TRAVERSAL = [
    "../../../../etc/passwd",
    "..%2F..%2Fapi%2Fv1%2Fusers",
    "....//....//etc/hosts",
    "%2e%2e/%2e%2e/openapi.json",
    "..\\..\\windows\\win.ini",
    "/",
    ".",
    "..",
    "%00",
    "\x00",
    "a/../../b",
]
_B64 = string.ascii_letters + string.digits + "-_"


def _hostile_tokens(real: str) -> st.SearchStrategy[str]:
    """Anything but a valid token: random text (any Unicode), base64-looking junk, 10 kB
    strings, percent-encoding, path traversal, and tampered copies of a real token."""
    tampered = st.builds(
        lambda i, c: real[:i] + c + real[i + 1 :],
        st.integers(0, len(real) - 1),
        st.sampled_from(_B64),
    ).filter(lambda t: t != real)
    inserted = st.builds(  # a real token with one extra (possibly non-ASCII) character
        lambda i, c: real[:i] + c + real[i:],
        st.integers(0, len(real)),
        st.characters(codec="utf-8", exclude_characters="/"),
    )
    return st.one_of(
        st.text(max_size=300),
        st.text(alphabet=_B64, min_size=1, max_size=300),
        st.builds(lambda c, n: c * n, st.characters(codec="utf-8"), st.integers(10_000, 10_240)),
        st.sampled_from(_TRAVERSAL),
        st.builds(lambda t: "".join(f"%{b:02X}" for b in t.encode()), st.text(min_size=1, max_size=50)),
        tampered,
        inserted,
        st.just(real + "x"),
        st.just(real[:-1]),
        st.just(real + "=="),
    ).filter(lambda t: t != real)


def _quoted(token: str, style: str) -> str:
    if style == "slashes":  # separators kept: traversal reaches the app as typed (after dot-segment removal)
        return quote(token, safe="/%")
    if style == "double":
        return quote(quote(token, safe=""), safe="")
    return quote(token, safe="")


def _row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t.name: conn.scalar(select(func.count()).select_from(t)) or 0 for t in Base.metadata.sorted_tables}


def _pending(queue: Any) -> int:
    """Events waiting in the in-process queue (the tests run without Redis)."""
    pending = getattr(queue, "pending", 0)
    return int(pending() if callable(pending) else pending)


def _public_fuzz(asgi_app: Any, engine: Engine, path_of: Any, real: str) -> None:
    queue = asgi_app.state.tracker.queue
    before, queued = _row_counts(engine), _pending(queue)
    seen: list[str] = []

    @given(token=_hostile_tokens(real), style=st.sampled_from(["plain", "slashes", "double"]))
    @example(token=real[:8] + "\x80" + real[8:], style="plain")  # was accepted: non-ASCII was ignored
    @example(token=real[:8] + "é" + real[8:], style="plain")
    @settings(
        max_examples=PUBLIC_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(token: str, style: str) -> None:
        path = path_of(_quoted(token, style))
        with st_asgi.get_client(asgi_app) as client:
            response = client.get(path, allow_redirects=False)
        seen.append(path)
        assert response.status_code == 404, (ascii(token[:300]), path[:300], response.status_code, response.text[:300])
        assert response.headers["content-type"].startswith("application/json"), path[:300]
        body = response.json()
        assert set(body) == {"detail", "code"}, body
        assert body["code"] == "not_found", body

    check()
    assert len(seen) >= PUBLIC_EXAMPLES // 2
    assert _pending(queue) == queued, "an invalid token was queued"
    assert _row_counts(engine) == before, "an invalid token wrote to the database"


def test_public_pixel_hostile_tokens(world: World, asgi_app: Any, engine: Engine) -> None:
    real = asgi_app.state.tracker.codec.pixel_token(world.shared["pixel_id"])
    _public_fuzz(asgi_app, engine, lambda token: f"/o/{token}.gif", real)


def test_public_click_hostile_tokens(world: World, asgi_app: Any, engine: Engine) -> None:
    codec = asgi_app.state.tracker.codec
    real = codec.click_token(world.shared["link_id"], world.shared["contact_id"])
    _public_fuzz(asgi_app, engine, lambda token: f"/c/{token}", real)
    # Correctly signed, but for a link that does not exist: also 404, nothing written.
    unknown = codec.click_token(MAX_ID, world.shared["contact_id"])
    with st_asgi.get_client(asgi_app) as client:
        response = client.get(f"/c/{unknown}", allow_redirects=False)
    assert response.status_code == 404, response.text


def test_public_conversion_hostile_tokens(world: World, asgi_app: Any, engine: Engine) -> None:
    """GET /e.gif (no Origin needed): any token but a real one is a 404 that records nothing."""
    shared = world.shared
    attribution = Attribution(
        shared["campaign_id"], shared["group_id"], shared["contact_id"], shared["link_id"], "0" * 24, int(time.time())
    )
    real = asgi_app.state.intake.codec.seal(attribution)
    _public_fuzz(asgi_app, engine, lambda token: f"/e.gif?name=purchase&pt={token}", real)


def test_rate_limited_answers_are_documented(settings: Settings, world: World, asgi_lifespans: None) -> None:
    """Past RATE_LIMIT_PER_MINUTE, every authenticated operation answers a documented 429
    (the suite's settings turn the limit off, so the fuzzing above never sees one)."""
    app = create_app(settings.model_copy(update={"rate_limit_per_minute": 1}))
    checked = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        if not operation.definition.raw.get("security"):
            continue
        headers = world.admin_headers
        case = operation.Case(path_parameters=dict.fromkeys(re.findall(r"{(\w+)}", operation.path), 1))
        for _ in range(3):  # the limit counts per fixed minute: a new minute lets one through
            response = case.call(app=app, headers=headers)
            if response.status_code == 429:
                break
        assert response.status_code == 429, (operation.label, response.status_code, response.text[:300])
        case.validate_response(
            response,
            checks=[
                not_a_server_error,
                status_code_conformance,
                content_type_conformance,
                response_schema_conformance,
                error_shape,
            ],
            headers=headers,
        )
        checked.append(operation.label)
    assert len(checked) >= 30, checked
