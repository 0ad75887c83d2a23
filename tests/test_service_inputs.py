"""Services take the typed request bodies and own the domain rules (issue #11, item 4): the
answers stay exactly those of the schema validators they replace, and every owned lookup
answers the same 404 for someone else's object as for a missing one."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from app.models import Campaign, User
from tests import factories
from tests.helpers import assert_error, count

CAMPAIGNS = "/api/v1/campaigns"


def test_create_with_dates_out_of_order_answers_the_validator_s_exact_422(client, db: Session, headers) -> None:
    body = {"name": "x", "starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z"}
    detail = assert_error(client.post(CAMPAIGNS, headers=headers, json=body), 422, "validation_error")["detail"]
    assert detail == [{"loc": ["body"], "msg": "Value error, ends_at must be after starts_at", "type": "value_error"}]
    assert count(db, Campaign) == 0


def test_patch_with_dates_out_of_order_is_located_at_ends_at(client, db: Session, user: User, headers) -> None:
    campaign = factories.make_campaign(db, user)
    body = {"starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z"}
    response = client.patch(f"{CAMPAIGNS}/{campaign.id}", headers=headers, json=body)
    detail = assert_error(response, 422, "validation_error")["detail"]
    assert detail == [{"loc": ["body", "ends_at"], "msg": "ends_at must be after starts_at", "type": "value_error"}]


@pytest.mark.parametrize(
    ("path", "thing"),
    [
        ("/api/v1/campaigns/{campaign}", "Campaign"),
        ("/api/v1/groups/{group}", "Group"),
        ("/api/v1/contacts/{contact}", "Contact"),
        ("/api/v1/pixels/{pixel}", "Pixel"),
        ("/api/v1/links/{link}", "Link"),
        ("/api/v1/openings/{opening}", "Opening"),
    ],
)
def test_someone_else_s_object_and_a_missing_one_answer_the_same_404(
    client, db: Session, other_user: User, headers, path: str, thing: str
) -> None:
    tree = factories.make_tree(db, other_user)
    ids = {name: obj.id for name, obj in tree.items() if hasattr(obj, "id")}
    for url in (path.format(**ids), path.format(**dict.fromkeys(ids, 2_000_000_000))):
        body = assert_error(client.get(url, headers=headers), 404, "not_found")
        assert body["detail"] == f"{thing} not found."
