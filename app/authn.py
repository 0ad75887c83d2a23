"""Who is calling: a bearer JWT or API key (`pt_…`) → the acting user, with a short cache.

Every authenticated request used to read its user from the database in the request's own
transaction (one more session checkout, SELECT, COMMIT and thread hop per request: the largest
part of an authenticated request's cost, docs/benchmarks.md). `Authenticator` keeps, in process:

- decoded JWTs (signature checked once per token; the expiry on every use);
- users (`Account`: the columns authentication and `/auth/me` need, token_version and
  is_active included) and API keys (by SHA-256, with their owner and expiry), each for at most
  `ttl` seconds (CACHE_SECONDS).

Revocation stays prompt: a change made through the API (password, deactivation, admin rights,
deletion of a user; revocation of a key) drops the entry at once in the process that made it,
once committed, and, with Redis, is published on AUTH_CHANGED so every other API process drops
it when the message arrives. Without Redis, or for a change made outside the API (by hand in
the database), other processes see it within `ttl` seconds. A lookup that started before an
invalidation never stores its (possibly stale) answer.

API keys' `last_used_at` is written at most once per LAST_USED_EVERY seconds per key and
process, in its own short transaction off the request (never a write per request).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import SQLAlchemyError

from app.changefeed import ChangeFeed
from app.clients import AsyncRedis
from app.db import connect_read_only
from app.errors import Forbidden, Unauthorized
from app.models import ApiKey, User
from app.security import InvalidToken, TokenClaims, decode_access_token
from app.services.apikeys import KEY_FORMAT, key_hash, looks_like_key

log = logging.getLogger("pixeltrack.auth")

CACHE_SECONDS = 2.0  # longest a change made outside this process goes unseen (no Redis / by hand)
LAST_USED_EVERY = 60.0  # seconds between two writes of one key's last_used_at (per process)
AUTH_CHANGED = "pt:auth:changed"  # Redis pub/sub channel: "user:<id>" and "key:<id>"
MAX_ENTRIES = 20_000  # per map; a full map is emptied (tokens and keys are re-read on next use)
_USER_COLUMNS = (User.id, User.username, User.email, User.is_admin, User.is_active, User.token_version, User.created_at)


@dataclass(frozen=True, slots=True)
class Account:
    """A users row as authentication sees it, with the `User` the routes receive: a transient
    object (never added to a session) built once per cache entry and only read by the routes and
    services (`user.id`, `user.is_admin`); building one per request cost ~4 % of a request."""

    id: int
    username: str
    email: str
    is_admin: bool
    is_active: bool
    token_version: int
    created_at: datetime
    user: User

    @classmethod
    def of(cls, row: Any) -> Account:
        user = User(
            id=row.id,
            username=row.username,
            email=row.email,
            is_admin=row.is_admin,
            is_active=row.is_active,
            token_version=row.token_version,
            created_at=row.created_at,
        )
        return cls(
            id=row.id,
            username=row.username,
            email=row.email,
            is_admin=row.is_admin,
            is_active=row.is_active,
            token_version=row.token_version,
            created_at=row.created_at,
            user=user,
        )


@dataclass(slots=True)
class KeyEntry:
    id: int
    owner_id: int
    expires_at: datetime | None
    last_used_at: datetime | None  # as stored, or as this process last wrote it


def _invalid() -> Unauthorized:
    return Unauthorized("Invalid or expired token.", code="invalid_token")


class Authenticator:
    def __init__(
        self,
        engine: Engine,
        *,
        secret: str,
        algorithm: str,
        redis: AsyncRedis | None = None,
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._secret = secret
        self._algorithm = algorithm
        self.ttl = ttl
        self.clock = clock  # Unix time: JWT expiry
        self._tokens: dict[str, TokenClaims] = {}
        self._accounts: dict[int, tuple[Account | None, float]] = {}
        self._keys: dict[str, tuple[KeyEntry | None, float]] = {}
        self._generation = 0  # bumped by every invalidation: older lookups do not store
        self._changes = ChangeFeed(redis, AUTH_CHANGED, on_message=self._apply, on_resubscribe=self.forget_all, ttl=ttl)
        self._background: set[asyncio.Task[None]] = set()

    # Who is calling.

    async def authenticate(self, token: str | None) -> User:
        """The acting user, or Unauthorized (401) / Forbidden (403, inactive account)."""
        if not token:
            raise Unauthorized("Not authenticated.")
        if looks_like_key(token):
            account = await self._key_owner(token)
        else:
            claims = self.claims(token)
            account = await self.account(claims.user_id)
            if account is not None and account.token_version != claims.token_version:
                raise _invalid()
        if account is None:
            raise _invalid()
        if not account.is_active:
            raise Forbidden("This account is inactive.", code="inactive_user")
        return account.user

    def claims(self, token: str) -> TokenClaims:
        """The JWT's claims (signature checked on first sight, expiry on every use), or 401."""
        claims = self._tokens.get(token)
        if claims is None:
            try:
                claims = decode_access_token(token, secret=self._secret, algorithm=self._algorithm)
            except InvalidToken:
                raise _invalid() from None
            _put(self._tokens, token, claims)
        if claims.expires <= self.clock():
            self._tokens.pop(token, None)
            raise _invalid()
        return claims

    async def account(self, user_id: int) -> Account | None:
        hit = self._accounts.get(user_id)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        generation = self._generation
        account = await asyncio.to_thread(self._load_account, user_id)
        if generation == self._generation:
            _put(self._accounts, user_id, (account, time.monotonic() + self.ttl))
        return account

    async def live_key(self, token: str) -> KeyEntry | None:
        """The stored key for this `pt_…` token if it exists and has not expired."""
        if KEY_FORMAT.fullmatch(token) is None:
            return None
        digest = key_hash(token)
        hit = self._keys.get(digest)
        if hit is not None and hit[1] > time.monotonic():
            entry = hit[0]
        else:
            generation = self._generation
            entry = await asyncio.to_thread(self._load_key, digest)
            if generation == self._generation:
                _put(self._keys, digest, (entry, time.monotonic() + self.ttl))
        if entry is None or (entry.expires_at is not None and entry.expires_at <= datetime.now(UTC)):
            return None
        return entry

    async def _key_owner(self, token: str) -> Account | None:
        entry = await self.live_key(token)
        if entry is None:
            raise _invalid()
        self._note_use(entry)
        return await self.account(entry.owner_id)

    # Loads (in a worker thread: they wait on the database).

    def _load_account(self, user_id: int) -> Account | None:
        with connect_read_only(self._engine) as conn:
            row = conn.execute(select(*_USER_COLUMNS).where(User.id == user_id)).first()
        return None if row is None else Account.of(row)

    def _load_key(self, digest: str) -> KeyEntry | None:
        columns = (ApiKey.id, ApiKey.owner_id, ApiKey.expires_at, ApiKey.last_used_at)
        with connect_read_only(self._engine) as conn:
            row = conn.execute(select(*columns).where(ApiKey.key_hash == digest)).first()
        return None if row is None else KeyEntry(*row)

    # last_used_at: at most one write per key per LAST_USED_EVERY seconds.

    def _note_use(self, entry: KeyEntry) -> None:
        now = datetime.now(UTC)
        if entry.last_used_at is not None and now - entry.last_used_at < timedelta(seconds=LAST_USED_EVERY):
            return
        entry.last_used_at = now  # the other requests of this minute see it and write nothing
        task = asyncio.create_task(asyncio.to_thread(self._write_last_used, entry.id, now))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _write_last_used(self, key_id: int, when: datetime) -> None:
        try:
            with self._engine.begin() as conn:
                conn.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=when))
        except SQLAlchemyError as exc:  # a lost "last used" must never fail or slow a request
            log.warning("could not record an API key's last use: %s", exc.__class__.__name__)

    async def settle(self) -> None:
        """Wait for the last_used_at writes under way (shutdown, tests)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # Invalidation.

    def forget_user(self, user_id: int) -> None:
        self._generation += 1
        self._accounts.pop(user_id, None)

    def forget_key(self, key_id: int) -> None:
        self._generation += 1
        for digest, (entry, _) in list(self._keys.items()):
            if entry is not None and entry.id == key_id:
                del self._keys[digest]

    def forget_all(self) -> None:
        self._generation += 1
        self._accounts.clear()
        self._keys.clear()

    async def user_changed(self, user_id: int) -> None:
        """A user's password, rights or state changed, or the user was deleted (committed)."""
        self.forget_user(user_id)
        await self._publish(f"user:{user_id}")

    async def key_revoked(self, key_id: int) -> None:
        """An API key was deleted (committed)."""
        self.forget_key(key_id)
        await self._publish(f"key:{key_id}")

    async def _publish(self, message: str) -> None:
        await self._changes.publish(message)

    def _apply(self, message: str) -> None:
        kind, _, ident = message.partition(":")
        if not ident.isdigit():
            return
        if kind == "user":
            self.forget_user(int(ident))
        elif kind == "key":
            self.forget_key(int(ident))

    async def start(self) -> None:
        """Subscribe to AUTH_CHANGED (before serving, so no change made after start is missed)."""
        await self._changes.start()

    async def close(self) -> None:
        await self._changes.close()
        await self.settle()


def _put(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= MAX_ENTRIES:
        cache.clear()
    cache[key] = value
