"""A/B confidence in the stats (issue #12, part 4): each group against the control on the human open
and click rates, the winner, ?control and ?metric.

Expected figures come from scipy (the z-test's p is the uncorrected chi-squared test's on the 2x2
table; Fisher's exact test), from a second implementation of Newcombe's interval written here, and
from published values (Newcombe 1998, table II). The statistics themselves: tests/test_abtest.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from scipy import stats as sp
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.models import Campaign, Contact, User
from app.schemas.reports import CampaignStats
from app.services.sample import load_sample, read_sample
from app.settings import Settings
from tests import factories
from tests.helpers import assert_error
from tests.support.reports import group_of, make_arm, stats

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def min_sample(app: FastAPI, settings: Settings) -> Iterator[Callable[[int], None]]:
    """Set AB_MIN_SAMPLE of the app under test (the suite's settings again afterwards)."""

    def set_to(value: int) -> None:
        app.state.settings = settings.model_copy(update={"ab_min_sample": value})

    yield set_to
    app.state.settings = settings


def z_p(control: tuple[int, int], arm: tuple[int, int]) -> float:
    """The pooled two-proportion z-test's p: the uncorrected chi-squared test on the 2x2 table."""
    table = [[arm[0], arm[1] - arm[0]], [control[0], control[1] - control[0]]]
    return float(sp.chi2_contingency(table, correction=False).pvalue)


def fisher_p(control: tuple[int, int], arm: tuple[int, int]) -> float:
    return float(sp.fisher_exact([[arm[0], arm[1] - arm[0]], [control[0], control[1] - control[0]]]).pvalue)


def newcombe(control: tuple[int, int], arm: tuple[int, int]) -> tuple[float, float]:
    """Newcombe's hybrid score interval of arm - control (1998, method 10), written from the paper."""
    z = float(sp.norm.ppf(0.975))

    def wilson(x: int, n: int) -> tuple[float, float]:
        p = x / n
        centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)

    (xc, nc), (xa, na) = control, arm
    (lc, uc), (la, ua) = wilson(xc, nc), wilson(xa, na)
    d = xa / na - xc / nc
    return d - math.hypot(xa / na - la, uc - xc / nc), d + math.hypot(ua - xa / na, xc / nc - lc)


def assert_comparison(entry: dict[str, Any], control: tuple[int, int], arm: tuple[int, int], test: str) -> None:
    assert entry["test"] == test
    p = z_p(control, arm) if test == "z" else fisher_p(control, arm)
    assert entry["p_value"] == pytest.approx(p, rel=1e-3)  # 4 significant digits
    assert entry["difference"] == round(arm[0] / arm[1] - control[0] / control[1], 4)
    low, high = newcombe(control, arm)
    assert (entry["ci_low"], entry["ci_high"]) == (pytest.approx(low, abs=6e-5), pytest.approx(high, abs=6e-5))


def test_each_group_against_the_first_on_human_figures(
    client: Any, db: Session, user: User, headers: dict[str, str], min_sample: Any
) -> None:
    campaign = factories.make_campaign(db, user)
    a = make_arm(db, campaign, "a", 40, opened=10)
    b = make_arm(db, campaign, "b", 40, opened=16, clicked=22)  # 6 opened with images off: inferred
    body = stats(client, campaign.id, headers)
    assert (body["control_group_id"], group_of(body, a.id)["ab"]) == (a.id, None)
    group_b = group_of(body, b.id)
    assert (group_b["human_unique_opens"], group_b["inferred_opens"], group_b["human_open_rate"]) == (22, 6, 0.55)
    # Opens: 22 of 40 against 10 of 40 (every expected count >= 5: the z-test).
    assert_comparison(group_b["ab"]["opens"], (10, 40), (22, 40), "z")
    assert group_b["ab"]["opens"]["p_value"] == group_b["ab"]["opens"]["p_adjusted"]  # one arm: no correction
    assert group_b["ab"]["opens"]["p_value"] < 0.01
    # Clicks: 22 of 40 against none of 40.
    assert_comparison(group_b["ab"]["clicks"], (0, 40), (22, 40), "z")
    # Significant, but 40 contacts per group are below AB_MIN_SAMPLE (100 by default): no winner.
    assert (body["winner_metric"], body["winner"]) == ("opens", None)
    min_sample(40)
    assert stats(client, campaign.id, headers)["winner"] == b.id
    assert stats(client, campaign.id, headers, metric="clicks")["winner"] == b.id
    min_sample(41)
    assert stats(client, campaign.id, headers)["winner"] is None


def test_small_groups_use_fishers_test_and_match_published_intervals(
    client: Any, db: Session, user: User, headers: dict[str, str], min_sample: Any
) -> None:
    campaign = factories.make_campaign(db, user)
    make_arm(db, campaign, "ctl", 10, opened=3, clicked=1)
    arm = make_arm(db, campaign, "arm", 10, opened=9, clicked=1)
    min_sample(0)
    body = stats(client, campaign.id, headers)
    opens = group_of(body, arm.id)["ab"]["opens"]
    # Newcombe (1998), table II: 9/10 against 3/10 gives 0.1705 to 0.8090.
    assert (opens["difference"], opens["ci_low"], opens["ci_high"]) == (0.6, 0.1705, 0.809)
    assert_comparison(opens, (3, 10), (9, 10), "fisher")
    assert body["winner"] == arm.id  # p 0.0198
    clicks = group_of(body, arm.id)["ab"]["clicks"]
    assert (clicks["difference"], clicks["p_value"], clicks["test"]) == (0.0, 1.0, "fisher")  # equal rates
    assert stats(client, campaign.id, headers, metric="clicks")["winner"] is None


def test_holm_across_arms_and_the_metric_decides_the_winner(
    client: Any, db: Session, user: User, headers: dict[str, str], min_sample: Any
) -> None:
    campaign = factories.make_campaign(db, user)
    make_arm(db, campaign, "a", 30, opened=6, clicked=3)  # the control
    b = make_arm(db, campaign, "b", 30, opened=18, clicked=4)  # best opens
    c = make_arm(db, campaign, "c", 30, opened=9, clicked=14)  # best clicks; 5 inferred opens: 14 human openers
    empty = factories.make_group(db, campaign, name="empty")  # nobody to compare: out of the Holm family
    min_sample(30)
    body = stats(client, campaign.id, headers)
    ab_b, ab_c = group_of(body, b.id)["ab"], group_of(body, c.id)["ab"]
    assert_comparison(ab_b["opens"], (6, 30), (18, 30), "z")
    assert_comparison(ab_c["opens"], (6, 30), (14, 30), "z")
    assert_comparison(ab_b["clicks"], (3, 30), (4, 30), "fisher")  # 7 clickers of 60: an expected count < 5
    assert_comparison(ab_c["clicks"], (3, 30), (14, 30), "z")
    for metric, (low, high) in {"opens": (ab_b, ab_c), "clicks": (ab_c, ab_b)}.items():
        # Holm with two arms: the smaller p doubled, the larger kept (never below the first).
        p_low, p_high = z_p((6, 30), (18, 30)), z_p((6, 30), (14, 30))
        if metric == "clicks":
            p_low, p_high = z_p((3, 30), (14, 30)), fisher_p((3, 30), (4, 30))
        assert low[metric]["p_adjusted"] == pytest.approx(min(1, 2 * p_low), rel=1e-3)
        assert high[metric]["p_adjusted"] == pytest.approx(max(min(1, 2 * p_low), p_high), rel=1e-3)
    assert group_of(body, empty.id)["ab"]["opens"] == {
        "difference": None,
        "ci_low": None,
        "ci_high": None,
        "p_value": 1.0,
        "p_adjusted": 1.0,
        "test": "fisher",
    }
    assert (body["winner_metric"], body["winner"]) == ("opens", b.id)
    clicks = stats(client, campaign.id, headers, metric="clicks")
    assert (clicks["winner_metric"], clicks["winner"]) == ("clicks", c.id)
    assert clicks["groups"] == body["groups"]  # the metric picks the winner only
    # C also beats the control on opens (p_adjusted < 0.05), but B's rate is higher.
    assert ab_c["opens"]["p_adjusted"] < 0.05


def test_control_parameter(client: Any, db: Session, user: User, headers: dict[str, str], min_sample: Any) -> None:
    campaign = factories.make_campaign(db, user)
    a = make_arm(db, campaign, "a", 10, opened=9)
    b = make_arm(db, campaign, "b", 10, opened=3)
    min_sample(10)
    body = stats(client, campaign.id, headers, control=str(b.id))
    assert (body["control_group_id"], group_of(body, b.id)["ab"]) == (b.id, None)
    assert_comparison(group_of(body, a.id)["ab"]["opens"], (3, 10), (9, 10), "fisher")
    assert body["winner"] == a.id
    # Against the first group (the default), b is worse: the figures mirror, and no winner.
    default = stats(client, campaign.id, headers)
    opens = group_of(default, b.id)["ab"]["opens"]
    assert (opens["difference"], opens["ci_low"], opens["ci_high"]) == (-0.6, -0.809, -0.1705)
    assert (default["control_group_id"], default["winner"]) == (a.id, None)
    assert stats(client, campaign.id, headers, control=str(a.id)) == default


def test_a_control_outside_the_campaign_is_a_422(client: Any, db: Session, user: User, headers: dict[str, str]) -> None:
    campaign = factories.make_campaign(db, user)
    factories.make_group(db, campaign)
    other = factories.make_group(db, factories.make_campaign(db, user))  # same owner, another campaign
    empty = factories.make_campaign(db, user)  # no group at all
    url = f"/api/v1/campaigns/{campaign.id}/stats"
    for cid, control in ((campaign.id, other.id), (campaign.id, 987654321), (empty.id, other.id)):
        response = client.get(f"/api/v1/campaigns/{cid}/stats", params={"control": control}, headers=headers)
        body = assert_error(response, 422, "validation_error")
        assert body["detail"] == [
            {"loc": ["query", "control"], "msg": "control: not a group of this campaign", "type": "value_error"}
        ]
    for bad in ("0", "-3", "abc", str(2**63)):
        body = assert_error(client.get(url, params={"control": bad}, headers=headers), 422, "validation_error")
        assert body["detail"][0]["loc"] == ["query", "control"]
    assert stats(client, empty.id, headers)["control_group_id"] is None


def test_metric_parameter(client: Any, db: Session, user: User, headers: dict[str, str]) -> None:
    campaign = factories.make_campaign(db, user)
    url = f"/api/v1/campaigns/{campaign.id}/stats"
    for bad in ("OPENS", "", "revenue"):
        body = assert_error(client.get(url, params={"metric": bad}, headers=headers), 422, "validation_error")
        assert body["detail"][0]["loc"] == ["query", "metric"]
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/api/v1/campaigns/{campaign_id}/stats"]["get"]
    [metric] = [p for p in operation["parameters"] if p["name"] == "metric"]
    assert metric["schema"]["$ref"] == "#/components/schemas/ABMetric"
    assert schema["components"]["schemas"]["ABMetric"]["enum"] == ["opens", "clicks", "conversions"]


def test_rates_on_the_scheduled_basis_and_openers_not_marked_sent(
    client: Any, db: Session, user: User, headers: dict[str, str], min_sample: Any
) -> None:
    scheduled = factories.make_campaign(db, user)
    make_arm(db, scheduled, "s1", 10, opened=3, status="scheduled")
    arm = make_arm(db, scheduled, "s2", 10, opened=9, status="scheduled")
    min_sample(10)
    body = stats(client, scheduled.id, headers)
    assert body["open_rate_basis"] == "scheduled"
    assert_comparison(group_of(body, arm.id)["ab"]["opens"], (3, 10), (9, 10), "fisher")
    assert body["winner"] == arm.id
    # Sent basis, but a group whose unsent contacts opened: more openers than sent contacts. The
    # comparison caps the successes at the trials (5 of 2 → 2 of 2) instead of failing.
    mixed = factories.make_campaign(db, user)
    make_arm(db, mixed, "m1", 10, opened=1)
    odd = make_arm(db, mixed, "m2", 5, opened=5)
    unsent = select(Contact.id).where(Contact.group_id == odd.id).order_by(Contact.id).limit(3)
    db.execute(update(Contact).where(Contact.id.in_(list(db.scalars(unsent)))).values(status="scheduled"))
    db.commit()
    min_sample(0)
    body = stats(client, mixed.id, headers)
    group = group_of(body, odd.id)
    assert (group["contacts_sent"], group["human_unique_opens"], group["human_open_rate"]) == (2, 5, 2.5)
    assert_comparison(group["ab"]["opens"], (1, 10), (2, 2), "fisher")


def test_the_json_has_no_nan_or_infinity(client: Any, db: Session, user: User, headers: dict[str, str]) -> None:
    campaign = factories.make_campaign(db, user)
    for name, (n, opened) in {"all": (5, 5), "none": (0, 0), "zero": (5, 0), "big": (200, 199)}.items():
        make_arm(db, campaign, name, n, opened=opened, clicked=opened)
    response = client.get(f"/api/v1/campaigns/{campaign.id}/stats", headers=headers)
    assert response.status_code == 200, response.text

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the stats")

    body = json.loads(response.text, parse_constant=refuse)
    for group in body["groups"][1:]:
        for entry in group["ab"].values():
            assert entry["p_value"] <= entry["p_adjusted"] <= 1


def test_the_documented_example_is_what_the_sample_answers(
    client: Any, db: Session, user: User, headers: dict[str, str]
) -> None:
    load_sample(db, user, read_sample(ROOT / "sample.json"))
    db.commit()
    first = db.query(Campaign).filter_by(owner_id=user.id).order_by(Campaign.id).first()
    assert first is not None
    body = stats(client, first.id, headers, bucket="day")
    example = CampaignStats.model_config["json_schema_extra"]["example"]  # type: ignore[index]
    ids = {first.id: 1, **{g["group_id"]: i for i, g in enumerate(body["groups"], start=1)}}
    body["campaign_id"] = ids[body["campaign_id"]]
    body["control_group_id"] = ids[body["control_group_id"]]
    for group in body["groups"]:
        group["group_id"] = ids[group["group_id"]]
    assert body == json.loads(json.dumps(example))
    documented = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    start = documented.index('```json\n{\n  "campaign_id": 1,')
    assert json.loads(documented[start + 8 : documented.index("```", start + 8)]) == body
