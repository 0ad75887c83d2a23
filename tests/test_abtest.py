"""A/B test statistics (issue #12, part 4): app/services/abtest.py against scipy and hand computations.

No database: these run the same on both legs. scipy (dev extra only) is the reference; the module itself
uses only the standard library.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from scipy import stats

from app.services.abtest import Comparison, compare, compare_arms, holm, winner

# (control, arm) pairs of (successes, trials) with every expected count >= 5: the z-test.
Z_CASES = [
    ((100, 1000), (120, 1000)),
    ((150, 1000), (120, 1000)),
    ((30, 200), (45, 210)),
    ((400, 500), (430, 520)),
    ((5000, 100_000), (5200, 100_000)),
    ((100, 1000), (300, 1000)),  # p about 1e-28: the tail stays accurate (erfc, not 1 - cdf)
    ((1_000_000, 10_000_000), (1_001_500, 10_000_000)),
    ((3, 10_000_000), (9, 10_000_000)),  # expected successes 6 and 6
    ((6, 10), (4, 10)),  # every expected count exactly 5: not below 5
]

# Some expected count below 5: Fisher's exact test.
FISHER_CASES = [
    ((1, 10), (5, 10)),
    ((0, 8), (4, 9)),
    ((1, 40), (6, 45)),
    ((2, 1000), (7, 1000)),
    ((9, 9), (4, 12)),
    ((1, 3), (2, 4)),
    ((5, 10), (4, 10)),  # expected successes 4.5
    ((2, 10_000_000), (7, 10_000_000)),  # huge trials, few successes
    ((9_999_996, 10_000_000), (9_999_999, 10_000_000)),  # huge trials, few failures
    ((0, 29), (5, 56)),
    ((0, 20), (12, 12)),  # far from the mode: p about 1e-8
]


def _table(control: tuple[int, int], arm: tuple[int, int]) -> list[list[int]]:
    return [[arm[0], arm[1] - arm[0]], [control[0], control[1] - control[0]]]


def _interval(result: Comparison) -> tuple[float, float, float]:
    """(ci_low, difference, ci_high) of a comparison that has them."""
    assert result.ci_low is not None
    assert result.difference is not None
    assert result.ci_high is not None
    return result.ci_low, result.difference, result.ci_high


def _json(result: Comparison) -> str:
    return json.dumps(dataclasses.asdict(result), allow_nan=False)


@pytest.mark.parametrize(("control", "arm"), Z_CASES)
def test_z_test_p_value_matches_scipy(control, arm) -> None:
    result = compare(control, arm)
    assert result.test == "z"
    # The pooled two-proportion z-test is the uncorrected chi-squared test of the 2x2 table (chi2 = z^2).
    reference = stats.chi2_contingency(_table(control, arm), correction=False).pvalue
    assert result.p_value == pytest.approx(reference, rel=1e-9)
    pooled = (control[0] + arm[0]) / (control[1] + arm[1])
    se = math.sqrt(pooled * (1 - pooled) * (1 / control[1] + 1 / arm[1]))
    z = (arm[0] / arm[1] - control[0] / control[1]) / se
    assert result.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-7)
    assert result.p_adjusted == result.p_value


@pytest.mark.parametrize(("control", "arm"), FISHER_CASES)
def test_fisher_p_value_matches_scipy(control, arm) -> None:
    result = compare(control, arm)
    assert result.test == "fisher"
    reference = stats.fisher_exact(_table(control, arm), alternative="two-sided").pvalue
    assert result.p_value == pytest.approx(reference, rel=1e-9)


def test_fisher_matches_scipy_on_every_small_table() -> None:
    checked = 0
    for n_control in range(1, 9):
        for n_arm in range(1, 9):
            for x_control in range(n_control + 1):
                for x_arm in range(n_arm + 1):
                    control, arm = (x_control, n_control), (x_arm, n_arm)
                    result = compare(control, arm)
                    assert result.test == "fisher"  # 8 + 8 trials: some expected count is always below 5
                    reference = stats.fisher_exact(_table(control, arm)).pvalue
                    assert result.p_value == pytest.approx(min(1.0, reference), rel=1e-9, abs=1e-15), (control, arm)
                    checked += 1
    assert checked == 44 * 44  # (2 + 3 + ... + 9) ** 2


@pytest.mark.parametrize(
    ("control", "arm", "low", "high"),
    [
        # Newcombe (1998), Table II, method 10 (arm = his first sample): checked against statsmodels'
        # confint_proportions_2indep(method="newcomb") too.
        ((48, 80), (56, 70), 0.0524, 0.3339),
        ((3, 10), (9, 10), 0.1705, 0.8090),
        ((2, 7), (6, 7), 0.0582, 0.8062),
        ((0, 29), (5, 56), -0.0381, 0.1926),
        ((0, 20), (0, 10), -0.1611, 0.2775),
        ((0, 10), (0, 10), -0.2775, 0.2775),
        ((0, 20), (10, 10), 0.6791, 1.0),
        ((0, 10), (10, 10), 0.6075, 1.0),
    ],
)
def test_interval_is_newcombes_hybrid_score_interval(control, arm, low, high) -> None:
    result = compare(control, arm)
    assert result.ci_low == pytest.approx(low, abs=5e-5)
    assert result.ci_high == pytest.approx(high, abs=5e-5)
    if high == 1.0:  # all successes against none: exactly 1, not 1 plus a rounding error
        assert result.ci_high == 1.0
    # Swapping the groups mirrors the interval.
    swapped = compare(arm, control)
    assert swapped.ci_low == pytest.approx(-high, abs=5e-5)
    assert swapped.ci_high == pytest.approx(-low, abs=5e-5)


def test_interval_level_follows_alpha() -> None:
    results = [compare((100, 1000), (130, 1000), alpha=alpha) for alpha in (0.01, 0.05, 0.2)]
    (low_99, _, high_99), (low_95, _, high_95), (low_80, _, high_80) = map(_interval, results)
    assert low_99 < low_95 < low_80 < 0.03 < high_80 < high_95 < high_99
    assert len({result.p_value for result in results}) == 1  # alpha changes the interval, not the test
    # This difference is clear of 0 at 95 % (p 0.035) but not at 99 %.
    assert low_95 > 0 > low_99


def test_rates_and_difference() -> None:
    result = compare((100, 1000), (130, 1000))
    assert (result.control_rate, result.arm_rate) == (0.1, 0.13)
    low, difference, high = _interval(result)
    assert difference == pytest.approx(0.03, abs=1e-15)
    assert low < difference < high


@pytest.mark.parametrize(
    ("p_values", "expected"),
    [
        ([0.01, 0.04, 0.03], [0.03, 0.06, 0.06]),
        ([0.01, 0.02, 0.03, 0.04], [0.04, 0.06, 0.06, 0.06]),
        ([0.4, 0.6, 0.01], [0.8, 0.8, 0.03]),
        ([0.5, 0.3], [0.6, 0.6]),
        ([0.7, 0.8], [1.0, 1.0]),  # capped at 1
        ([0.02, 0.02], [0.04, 0.04]),
        ([0.0, 0.5], [0.0, 0.5]),
        ([0.2], [0.2]),
        ([], []),
    ],
)
def test_holm_hand_computed(p_values, expected) -> None:
    assert holm(p_values) == pytest.approx(expected, abs=1e-12)


def test_holm_is_monotone_and_never_below_the_raw_p() -> None:
    p_values = [0.04, 0.001, 0.3, 0.012, 0.0125, 0.9, 0.05]
    adjusted = holm(p_values)
    for raw, adj in zip(p_values, adjusted, strict=True):
        assert raw <= adj <= 1.0
    ordered = sorted(zip(p_values, adjusted, strict=True))
    assert [adj for _, adj in ordered] == sorted(adjusted)


@pytest.mark.parametrize("bad", [[1.5], [-0.1], [math.nan], [0.2, math.inf]])
def test_holm_rejects_what_is_not_a_p_value(bad) -> None:
    with pytest.raises(ValueError, match="p-value"):
        holm(bad)


def test_compare_arms_adjusts_across_the_arms() -> None:
    arms = {"a": (128, 1000), "b": (100, 1000), "c": (101, 1000)}
    results = compare_arms((100, 1000), arms)
    assert list(results) == ["a", "b", "c"]
    raw = [results[key].p_value for key in arms]
    assert raw == [compare((100, 1000), counts).p_value for counts in arms.values()]
    assert [results[key].p_adjusted for key in arms] == holm(raw)
    assert results["a"].p_value < 0.05 < results["a"].p_adjusted


def test_compare_arms_single_arm_is_not_adjusted() -> None:
    results = compare_arms((100, 1000), {7: (128, 1000)})
    assert results[7].p_adjusted == results[7].p_value < 0.05


def test_compare_arms_leaves_empty_arms_out_of_the_family() -> None:
    results = compare_arms((100, 1000), {"a": (128, 1000), "b": (101, 1000), "empty": (0, 0)})
    assert results["a"].p_adjusted == pytest.approx(2 * results["a"].p_value)
    assert (results["empty"].p_value, results["empty"].p_adjusted) == (1.0, 1.0)
    # No control trials: nothing is tested, nothing adjusted.
    for result in compare_arms((0, 0), {"a": (128, 1000), "b": (1, 1000)}).values():
        assert (result.p_value, result.p_adjusted, result.difference) == (1.0, 1.0, None)


def test_winner_is_the_arm_that_beats_the_control() -> None:
    assert winner("ctl", (100, 1000), {"a": (100, 1000), "b": (150, 1000)}) == "b"


def test_winner_is_the_best_rate_among_the_significant_arms() -> None:
    assert winner("ctl", (100, 1000), {"a": (160, 1000), "b": (200, 1000), "c": (180, 1000)}) == "b"


def test_no_winner_when_the_arm_is_worse_or_not_significant() -> None:
    assert winner("ctl", (150, 1000), {"a": (100, 1000)}) is None
    assert winner("ctl", (100, 1000), {"a": (110, 1000)}) is None
    assert winner("ctl", (100, 1000), {}) is None


def test_winner_needs_the_holm_adjusted_p() -> None:
    assert winner("ctl", (100, 1000), {"a": (128, 1000)}) == "a"  # p 0.049 alone
    assert winner("ctl", (100, 1000), {"a": (128, 1000), "b": (100, 1000), "c": (101, 1000)}) is None
    assert winner("ctl", (100, 1000), {"a": (128, 1000)}, alpha=0.01) is None


def test_winner_needs_min_sample_trials_in_the_control_and_the_arm() -> None:
    assert winner("ctl", (10, 99), {"a": (60, 99)}) is None
    assert winner("ctl", (10, 99), {"a": (60, 99)}, min_sample=99) == "a"
    # An arm with too few trials is not the winner and does not stop one: "winner" means "beats the control".
    arms = {"small": (60, 90), "b": (150, 1000)}
    assert winner("ctl", (100, 1000), arms) == "b"
    assert winner("ctl", (100, 1000), arms, min_sample=50) == "small"
    assert winner("ctl", (100, 1000), {"a": (0, 0)}, min_sample=0) is None


def test_the_control_is_never_the_winner() -> None:
    arms = {"ctl": (900, 1000), "b": (150, 1000)}  # the control's own entry is left out, whatever it says
    assert winner("ctl", (100, 1000), arms) == "b"
    assert winner("ctl", (100, 1000), {"ctl": (900, 1000)}) is None
    # Its entry is not part of the Holm family either: b alone is significant at p 0.049.
    assert winner("ctl", (100, 1000), {"ctl": (100, 1000), "b": (128, 1000)}) == "b"


def test_winner_ties_go_to_the_first_arm() -> None:
    assert winner(0, (100, 1000), {2: (150, 1000), 1: (150, 1000)}) == 2
    assert winner(0, (100, 1000), {1: (150, 1000), 2: (150, 1000)}) == 1
    # Equal rates, different p: the smaller adjusted p (the larger arm) wins.
    assert winner(0, (100, 1000), {1: (150, 1000), 2: (300, 2000)}) == 2


@pytest.mark.parametrize(("control", "arm"), [((10, 100), (0, 0)), ((0, 0), (10, 100)), ((0, 0), (0, 0))])
def test_zero_trials_give_no_rate_p_one_and_no_interval(control, arm) -> None:
    result = compare(control, arm)
    assert result.difference is None
    assert (result.ci_low, result.ci_high) == (None, None)
    assert (result.p_value, result.p_adjusted, result.test) == (1.0, 1.0, "fisher")
    assert result.control_rate == (0.1 if control[1] else None)
    assert result.arm_rate == (0.1 if arm[1] else None)
    assert "NaN" not in _json(result)


@pytest.mark.parametrize(
    ("control", "arm"),
    [
        ((100, 100), (50, 50)),
        ((0, 100), (0, 50)),
        ((10**7, 10**7), (10**7, 10**7)),
        ((0, 10**7), (0, 10**7)),
        ((10, 100), (20, 200)),
        ((1, 4), (2, 8)),
        ((123_456, 10**7), (123_456, 10**7)),
    ],
)
def test_equal_rates_give_p_exactly_one(control, arm) -> None:
    result = compare(control, arm)
    assert result.p_value == 1.0
    low, difference, high = _interval(result)
    assert -1.0 <= low < difference == 0.0 < high <= 1.0


def test_interval_never_leaves_minus_one_to_one() -> None:
    # All successes against none: the bound is exactly 1 (the Wilson bounds at 0 and at all trials are
    # exactly 0 and 1; computed naively they come out 1 + 2e-16 for 13 of 13, for example).
    for n_arm in range(1, 60):
        for n_control in (1, 2, 3, 10, 50):
            assert compare((0, n_control), (n_arm, n_arm)).ci_high == 1.0
            assert compare((n_control, n_control), (0, n_arm)).ci_low == -1.0


def test_huge_counts_stay_finite_and_exact() -> None:
    control, arm = (1_234_567, 10**7), (1_240_000, 10**7)
    result = compare(control, arm)
    assert result.test == "z"
    reference = stats.chi2_contingency(_table(control, arm), correction=False).pvalue
    assert result.p_value == pytest.approx(reference, rel=1e-9)
    big = compare((10**12, 3 * 10**12), (10**12 + 10**7, 3 * 10**12))
    assert 0.0 < big.p_value < 1e-6
    _json(result)
    _json(big)


def test_every_small_table_gives_finite_json() -> None:
    for n_control in range(6):
        for n_arm in range(6):
            for x_control in range(n_control + 1):
                for x_arm in range(n_arm + 1):
                    result = compare((x_control, n_control), (x_arm, n_arm))
                    _json(result)  # raises on NaN or infinity
                    assert 0.0 <= result.p_value <= 1.0
                    if n_control and n_arm:
                        low, difference, high = _interval(result)
                        assert -1.0 <= low <= difference <= high <= 1.0


@pytest.mark.parametrize(
    ("control", "arm"),
    [
        ((-1, 10), (1, 10)),
        ((1, 10), (11, 10)),
        ((1, -10), (1, 10)),
        ((1.5, 10), (1, 10)),
        ((1, 10), (1, 10, 3)),
        ((1, 10), "ab"),
    ],
)
def test_invalid_counts_are_a_value_error(control, arm) -> None:
    with pytest.raises(ValueError, match="successes"):
        compare(control, arm)
    with pytest.raises(ValueError, match="successes"):
        compare_arms(control, {"a": arm})


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.05, math.nan])
def test_alpha_outside_zero_one_is_a_value_error(alpha) -> None:
    with pytest.raises(ValueError, match="alpha"):
        compare((1, 10), (2, 10), alpha=alpha)


def test_tiny_alpha_and_negative_min_sample() -> None:
    low, _, high = _interval(compare((100, 1000), (130, 1000), alpha=1e-300))
    assert -1.0 <= low < 0.0 < 0.03 < high <= 1.0
    with pytest.raises(ValueError, match="min_sample"):
        winner("ctl", (100, 1000), {"a": (150, 1000)}, min_sample=-1)
