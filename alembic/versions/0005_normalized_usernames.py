"""usernames in their one normal form: NFKC, case-folded, stripped (unique case-insensitively)

Logins, the failed-login throttle and uniqueness now use the normalised username
(app/credentials.py normalize_username). Existing rows are rewritten to that form.

Collisions (e.g. `Alice` and `alice`, or `gina` and `gina ` created by the CLI): the oldest
account (lowest id) keeps the name; each other one is renamed `<name>-<id>` (cut to fit 64
characters) and reported in the migration's log, so that an admin can tell its owner. Nobody
loses an account or a password. The downgrade leaves the names as they are (lower case is a
valid old form too).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 18:00:00
"""

import logging
import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")
MAX_LENGTH = 64


def _normalize(raw: str) -> str:
    # Frozen copy of app.credentials.normalize_username (migrations must not change with app code).
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", raw).casefold()).strip()


def upgrade() -> None:
    conn = op.get_bind()
    users = sa.table("users", sa.column("id", sa.BigInteger()), sa.column("username", sa.String(MAX_LENGTH)))
    rows = conn.execute(sa.select(users.c.id, users.c.username).order_by(users.c.id)).all()
    taken: set[str] = set()
    renames: dict[int, str] = {}
    for user_id, username in rows:
        name = _normalize(username)[:MAX_LENGTH] or f"user-{user_id}"
        if name in taken:
            base, attempt = name, 0
            while name in taken:
                suffix = f"-{user_id}" + (f"-{attempt}" if attempt else "")
                name, attempt = base[: MAX_LENGTH - len(suffix)] + suffix, attempt + 1
            log.warning("username %r of user %s collides once normalised: renamed %r", username, user_id, name)
        taken.add(name)
        if name != username:
            renames[user_id] = name
    # Two passes through a placeholder, so that no intermediate state breaks the unique index
    # (`Alice` → `alice` while an `alice` still waits to become `alice-7`).
    for user_id in renames:
        conn.execute(sa.update(users).where(users.c.id == user_id).values(username=f"#migrating#{user_id}"))
    for user_id, name in renames.items():
        conn.execute(sa.update(users).where(users.c.id == user_id).values(username=name))


def downgrade() -> None:
    pass
