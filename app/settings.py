"""The one place configuration is read (environment variables and `.env`).

Every variable the service reads is a field here or in a base (app/settings_*.py); `.env.example`
and docs/configuration.md (generated from the fields) document them.
`DATABASE_URL` overrides the MYSQL_* variables and `REDIS_URL` the REDIS_* ones.
With no MySQL configured the service uses an embedded SQLite file, and with no Redis an in-process queue.
"""

from __future__ import annotations

import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal, Self
from urllib.parse import quote

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.credentials import MIN_PASSWORD_LENGTH, password_problem
from app.settings_conversions import ConversionSettings
from app.settings_scale import ScaleSettings
from app.settings_scale import StartupError as StartupError  # re-exported: callers import it from here
from app.settings_webhooks import WebhookSettings
from app.settings_worker import WorkerSettings

# Values shipped in .env.example: never acceptable in production.
EXAMPLE_SECRETS = frozenset(
    {
        "change-me",
        "changeme",
        "change-me-to-a-long-random-string",
        "secret",
        "password",
        "example",
    }
)
EXAMPLE_FERNET_KEY = "bm90LWEtcmVhbC1rZXktcmVwbGFjZS1pdC1wbGVhc2U="
ALLOWED_JWT_ALGORITHMS = ("HS256", "HS384", "HS512")
MIN_SECRET_LENGTH = 32
MIN_METRICS_TOKEN = 16


def _quote(value: str) -> str:
    # Percent-encode everything (a space too: SQLAlchemy and redis-py decode "%20", not "+").
    return quote(value, safe="")


class Settings(WebhookSettings, ConversionSettings, ScaleSettings, WorkerSettings):
    # Each field's docstring is its description: scripts/gen_config_docs.py renders them into
    # docs/configuration.md (tests/test_config_docs.py fails when that page is out of date).
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", use_attribute_docstrings=True
    )

    app_env: Literal["development", "test", "production"] = "development"
    """`production` refuses to start with missing, example or weak secrets (naming the variable, never its value)."""

    # Database: DATABASE_URL wins; else MYSQL_HOST selects MySQL; else SQLite.
    database_url: str | None = None
    """Any SQLAlchemy URL (`sqlite:///./pixeltrack.db`, `mysql+pymysql://…`); overrides the MYSQL_* variables."""
    mysql_user: str = "pixeltrack"
    """MySQL/MariaDB user."""
    mysql_password: SecretStr | None = None
    """MySQL/MariaDB password (required in production)."""
    mysql_host: str | None = None
    """MySQL/MariaDB host; unset (and no DATABASE_URL): the embedded SQLite file is used."""
    mysql_port: int = 3306
    """MySQL/MariaDB port."""
    mysql_database: str = "pixeltrack"
    """MySQL/MariaDB database name."""
    sqlite_path: str = "./pixeltrack.db"
    """Embedded SQLite file (WAL mode), used when no MySQL is configured."""
    # MySQL/MariaDB socket timeouts: a server that stops answering raises an error (503, or the
    # worker retries) instead of blocking forever. Migrations run without the read/write ones.
    database_connect_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    """MySQL connect timeout (seconds)."""
    database_read_timeout_seconds: float = Field(default=60.0, gt=0, le=86_400)
    """MySQL read timeout (seconds): a server that stops answering becomes a 503 (the worker retries)."""
    database_write_timeout_seconds: float = Field(default=60.0, gt=0, le=86_400)
    """MySQL write timeout (seconds); migrations run without the read/write timeouts."""

    # Redis: REDIS_URL wins; else REDIS_HOST selects Redis; else in-process.
    redis_url: str | None = None
    """Redis URL; overrides the REDIS_* variables. No Redis: in-process dedupe cache and queue."""
    redis_host: str | None = None
    """Redis host; unset (and no REDIS_URL): in-process dedupe cache and queue, no worker needed."""
    redis_port: int = 6379
    """Redis port."""
    redis_password: SecretStr | None = None
    """Redis password."""

    # Security.
    api_secret_key: SecretStr | None = None
    """JWT signing key (>= 32 characters in production); generated into SECRETS_FILE in development."""
    api_secret_algorithm: str = "HS256"
    """JWT algorithm: HS256, HS384 or HS512; the accepted list is pinned to this one."""
    api_access_token_expire_minutes: int = Field(default=60, ge=1, le=60 * 24 * 30)
    """Access token lifetime (minutes)."""
    fernet_key: SecretStr | None = None
    """Key of pixel/click tokens (`pixeltrack gen-fernet-key`); generated into SECRETS_FILE in development."""
    fernet_old_keys: SecretStr | None = None
    """Older Fernet keys still accepted for decoding (comma-separated, newest first): key rotation."""
    secrets_file: str = "./.pixeltrack-secrets.json"
    """Where development keeps generated secrets (mode 0600), so tokens survive restarts."""

    # Public URLs and tracking.
    public_base_url: str = "http://localhost:8000"
    """Base of pixel and click URLs in emails (`pixeltrack serve` without it: its own host:port)."""
    dedupe_window_seconds: int = Field(default=3600, ge=0, le=7 * 24 * 3600)
    """Repeat loads of a pixel or link within this many seconds are not recorded again (one machine and one human load each)."""
    scanner_window_seconds: int = Field(default=10, ge=0, le=3600)
    """A click this soon after its contact's `sent_at` is a link scanner's (`scanner`, reason `timing:after-send`; 0: off)."""
    scanner_burst_seconds: int = Field(default=5, ge=0, le=3600)
    """A contact following all its campaign's links (2 or more) within this many seconds is a link scanner (`timing:burst`; 0: off)."""
    anonymize_ip: bool = False
    """Truncate IPv4 to /24 and IPv6 to /48 before anything is stored (Redis or database)."""
    worker_batch_size: int = Field(default=1000, ge=1, le=10_000)
    """Stream entries per database batch (`pixeltrack worker`)."""
    worker_claim_idle_ms: int = Field(default=30_000, ge=100)
    """Entries another (dead) consumer left unacknowledged this long are reclaimed."""
    worker_metrics_port: int = Field(default=9100, ge=0, le=65535)
    """Port of the worker's (and the dispatcher's) `/metrics` (0: off)."""
    worker_metrics_host: str = "127.0.0.1"
    """Address of the worker's `/metrics` (0.0.0.0 in containers)."""

    first_admin_username: str | None = None
    """Admin created on start only when no admin exists at all (docs/accounts.md)."""
    first_admin_password: SecretStr | None = None
    """Password of that admin (>= 10 characters, not a common one)."""
    first_admin_email: str | None = None
    """Email of that admin."""

    tracking_disabled: bool = False
    """Pixels and links still answer (GIF / redirect) but nothing is recorded."""
    respect_dnt: bool = False
    """Loads sending `DNT: 1` or `Sec-GPC: 1` are answered but not recorded."""

    ab_min_sample: int = Field(default=100, ge=0, le=1_000_000_000)
    """Stats: no A/B `winner` while the control or the arm has fewer contacts (the rate's denominator) than this."""
    login_max_failures: int = Field(default=5, ge=1, le=1000)
    """Failed logins per username + IP within the window before `POST /auth/token` answers 429."""
    login_failure_window_seconds: int = Field(default=900, ge=1, le=86_400)
    """Window of LOGIN_MAX_FAILURES (seconds); a successful login clears the count."""
    rate_limit_per_minute: int = Field(default=1200, ge=0, le=1_000_000)
    """Authenticated requests per user per minute (429 beyond; 0: no limit); shared through Redis when configured."""

    redis_call_timeout_seconds: float = Field(default=0.5, gt=0, le=30)
    """A Redis call slower than this is abandoned and opens the circuit breaker."""
    redis_breaker_open_seconds: float = Field(default=2.0, gt=0, le=300)
    """How long the API then skips Redis (pixels: in-process queue; rate limits: per process)."""
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    """Largest request body (413 beyond, counted while it streams); 8 MB holds a 10,000-contact import."""
    cors_origins: str = ""
    """Browser origins allowed to call the API (comma-separated); empty: no CORS. Credentials never allowed."""

    forwarded_allow_ips: str = ""
    """Proxies (IPs/networks, or *) whose X-Forwarded-For/-Proto are trusted; empty: the client is the TCP peer."""
    metrics_token: SecretStr | None = None
    """Bearer token every `/metrics` (API and worker) requires when set."""
    metrics_bind: str | None = None
    """`host:port` of a separate listener for the API's `/metrics`; production needs it or METRICS_TOKEN."""

    log_level: str = "INFO"
    """Log level."""
    access_log: bool = False
    """One log line per request, client address dropped and tracking tokens redacted (docs/serving.md)."""

    @field_validator(
        "api_secret_key",
        "fernet_key",
        "fernet_old_keys",
        "mysql_password",
        "redis_password",
        "first_admin_password",
        "metrics_token",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `API_SECRET_KEY=` (as left from .env.example) means "not set": generated in
        # development, refused in production; never an empty signing key.
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(raw, str) and not raw.strip():
            return None
        return value

    @model_validator(mode="after")
    def _refuse_insecure(self) -> Self:
        # Settings built with weak production secrets never exist (an explicit raise, not an
        # assert: `python -O` keeps it). model_copy() skips validators: check_and_fill_secrets
        # (get_settings) runs the same checks again.
        refuse_insecure(self)
        return self

    @field_validator("api_secret_algorithm")
    @classmethod
    def _pinned_algorithm(cls, value: str) -> str:
        if value not in ALLOWED_JWT_ALGORITHMS:
            raise ValueError(f"API_SECRET_ALGORITHM must be one of {', '.join(ALLOWED_JWT_ALGORITHMS)}")
        return value

    @field_validator("metrics_bind")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        host, sep, port = value.strip().rpartition(":")
        if not sep or not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("METRICS_BIND must be host:port, e.g. 127.0.0.1:9101")
        return value.strip()

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """METRICS_BIND as (host, port); brackets of an IPv6 host removed."""
        if not self.metrics_bind:
            return None
        host, _, port = self.metrics_bind.rpartition(":")
        return host.strip("[]"), int(port)

    @field_validator("public_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        if self.mysql_host:
            password = self.mysql_password.get_secret_value() if self.mysql_password else ""
            return (
                f"mysql+pymysql://{_quote(self.mysql_user)}:{_quote(password)}"
                f"@{self.mysql_host}:{self.mysql_port}/{self.mysql_database}?charset=utf8mb4"
            )
        return f"sqlite:///{self.sqlite_path}"

    @property
    def database_timeouts(self) -> dict[str, float]:
        """Keyword arguments of app.db.make_engine."""
        return {
            "connect_timeout": self.database_connect_timeout_seconds,
            "read_timeout": self.database_read_timeout_seconds,
            "write_timeout": self.database_write_timeout_seconds,
        }

    @property
    def uses_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")

    @property
    def redis_dsn(self) -> str | None:
        if self.redis_url:
            return self.redis_url
        if self.redis_host:
            password = self.redis_password.get_secret_value() if self.redis_password else ""
            auth = f":{_quote(password)}@" if password else ""
            return f"redis://{auth}{self.redis_host}:{self.redis_port}/0"
        return None

    def secret_key(self) -> str:
        if self.api_secret_key is None:  # (an explicit check: an assert vanishes under python -O)
            raise StartupError("API_SECRET_KEY is not resolved: build settings with get_settings()")
        return self.api_secret_key.get_secret_value()

    def fernet_keys(self) -> list[str]:
        """Current key first, then the older keys still accepted."""
        if self.fernet_key is None:
            raise StartupError("FERNET_KEY is not resolved: build settings with get_settings()")
        keys = [self.fernet_key.get_secret_value()]
        if self.fernet_old_keys:
            keys += [k.strip() for k in self.fernet_old_keys.get_secret_value().split(",") if k.strip()]
        return keys


def _is_weak(value: SecretStr | None, *, min_length: int = MIN_SECRET_LENGTH) -> bool:
    if value is None:
        return True
    raw = value.get_secret_value()
    return raw.strip().lower() in EXAMPLE_SECRETS or len(raw) < min_length


def _valid_fernet(key: str) -> bool:
    try:
        Fernet(key)
    except (ValueError, TypeError):
        return False
    return True


def refuse_insecure(settings: Settings) -> None:
    """StartupError naming every malformed key and, in production, every missing/example/weak secret."""
    problems: list[str] = []
    for key in [settings.fernet_key, *([settings.fernet_old_keys] if settings.fernet_old_keys else [])]:
        if key is not None:
            for part in key.get_secret_value().split(","):
                if part.strip() and not _valid_fernet(part.strip()):
                    problems.append(
                        "FERNET_KEY/FERNET_OLD_KEYS must be url-safe base64 32-byte keys (pixeltrack gen-fernet-key)"
                    )
    if settings.is_production:
        if _is_weak(settings.api_secret_key):
            problems.append(
                f"API_SECRET_KEY is missing, an example value or shorter than {MIN_SECRET_LENGTH} characters"
            )
        if settings.fernet_key is None or settings.fernet_key.get_secret_value() == EXAMPLE_FERNET_KEY:
            problems.append("FERNET_KEY is missing or the example value")
        if settings.fernet_old_keys and EXAMPLE_FERNET_KEY in _parts(settings.fernet_old_keys):
            # An accepted old key signs valid tokens too: anyone could forge pixels and clicks.
            problems.append("FERNET_OLD_KEYS contains the example key of .env.example")
        if not settings.uses_sqlite and not settings.database_url and _is_weak(settings.mysql_password, min_length=8):
            problems.append("MYSQL_PASSWORD is missing or an example value")
        if settings.database_url and not settings.uses_sqlite:
            url_password = _database_url_password(settings)
            if url_password is None:
                problems.append("DATABASE_URL has no password")
            elif _is_weak(SecretStr(url_password), min_length=8):
                problems.append("the password in DATABASE_URL is an example value or shorter than 8 characters")
        if settings.first_admin_password is not None and (
            _is_weak(settings.first_admin_password, min_length=MIN_PASSWORD_LENGTH)
            or password_problem(settings.first_admin_password.get_secret_value()) is not None
        ):
            problems.append(
                f"FIRST_ADMIN_PASSWORD is an example value, shorter than {MIN_PASSWORD_LENGTH} characters "
                "or a common password"
            )
        if settings.metrics_token is None and not settings.metrics_bind:
            problems.append("METRICS_TOKEN is missing (or set METRICS_BIND to serve /metrics on a private listener)")
        elif settings.metrics_token is not None and _is_weak(settings.metrics_token, min_length=MIN_METRICS_TOKEN):
            problems.append(f"METRICS_TOKEN is an example value or shorter than {MIN_METRICS_TOKEN} characters")
    if problems:
        raise StartupError("refusing to start: " + "; ".join(dict.fromkeys(problems)))


def check_and_fill_secrets(settings: Settings) -> Settings:
    """Refuse production with missing/example secrets; in development, persist generated ones.

    Development keys are generated once and kept in SECRETS_FILE so that tokens and
    pixel URLs survive restarts and are shared by several workers.
    """
    refuse_insecure(settings)
    if settings.api_secret_key is None or settings.fernet_key is None:
        stored = _load_or_create_dev_secrets(Path(settings.secrets_file))
        updates: dict[str, SecretStr] = {}
        if settings.api_secret_key is None:
            updates["api_secret_key"] = SecretStr(stored["api_secret_key"])
        if settings.fernet_key is None:
            updates["fernet_key"] = SecretStr(stored["fernet_key"])
        settings = settings.model_copy(update=updates)
    return settings


def _parts(keys: SecretStr) -> list[str]:
    return [part.strip() for part in keys.get_secret_value().split(",") if part.strip()]


def _database_url_password(settings: Settings) -> str | None:
    if not settings.database_url or settings.uses_sqlite:
        return None
    try:
        return make_url(settings.database_url).password
    except ArgumentError:
        return None  # not a URL: the engine reports it without echoing it here


def _load_or_create_dev_secrets(path: Path) -> dict[str, str]:
    if not path.exists():
        fresh = {"api_secret_key": secrets.token_urlsafe(48), "fernet_key": Fernet.generate_key().decode()}
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(fresh, handle)
        try:
            os.link(tmp, path)  # atomic: the first of several starting workers wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    data: dict[str, str] = json.loads(path.read_text())
    return data


@lru_cache
def get_settings() -> Settings:
    return check_and_fill_secrets(Settings())
