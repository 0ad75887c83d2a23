"""The rules for usernames and passwords, in one place for the API, the CLI and FIRST_ADMIN_*.

Usernames are stored, looked up and throttled in one normal form (`normalize_username`):
Unicode NFKC, case-folded, surrounding whitespace removed. So `Gina`, `gina ` and the
full-width `gina` are the one user `gina` (unique case-insensitively), and MariaDB's PAD
SPACE comparison never sees a trailing space.

Passwords: at least MIN_PASSWORD_LENGTH characters and not one of the common passwords
shipped in app/data/common_passwords.txt (see the file's header for where it comes from).
"""

from __future__ import annotations

import unicodedata
from functools import cache
from importlib.resources import files

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 128
USERNAME_MAX_LENGTH = 64


def normalize_username(raw: str) -> str:
    """The one form of a username: NFKC, case-folded (NFKC again: folding can denormalise), stripped."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", raw).casefold())
    return folded.strip()


@cache
def common_passwords() -> frozenset[str]:
    text = files("app").joinpath("data", "common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def password_problem(password: str) -> str | None:
    """Why a password is refused (never quoting it), or None when it is acceptable."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"The password must have at least {MIN_PASSWORD_LENGTH} characters."
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"The password must have at most {MAX_PASSWORD_LENGTH} characters."
    if password.strip().lower() in common_passwords() or not password.strip():
        return "This password is too common; choose another one."
    return None
