"""Never a 500, nothing partially written: hostile and malformed input on every write route.

Every rejected request must answer a 4xx with the one error shape `{"detail", "code"}` and
leave every table exactly as it was (same rows, same values). Accepted exotic input (SQL-looking
text, emoji, right-to-left text, combining characters, NUL) is stored and returned verbatim on
both database legs.

Shared helpers: tests/support/bad_input.py; the route table: tests/support/routes.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from app.models import User
from tests import factories
from tests.support.bad_input import Ctx


@pytest.fixture
def ctx(db: Session, tree: dict[str, Any], user: User, headers: dict[str, str], admin_headers: dict[str, str]) -> Ctx:
    ids = {name: obj.id for name, obj in tree.items()}
    ids["user"] = user.id
    ids["webhook"] = factories.make_webhook(db, user).id
    ids["api_key"] = factories.make_api_key(db, user)[0].id
    return Ctx(ids=ids, headers=headers, admin_headers=admin_headers)
