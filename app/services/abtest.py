"""A/B test statistics: is an arm's rate really different from the control group's?

Each arm (a group of a campaign) is compared with the control group on one rate (opens per recipient,
clicks per recipient, ...) from two counts per group: successes and trials. What the figures of a
`Comparison` mean for a marketer:

- `control_rate`, `arm_rate`: the share of trials that succeeded (0.12 = 12 %). None for a group with
  no trials yet: 0 of 0 is no rate at all, not 0 %.
- `difference`: arm_rate - control_rate, in rate points (0.02 = the arm does 2 points better).
- `ci_low`, `ci_high`: the confidence interval of the difference, 95 % by default (1 - alpha): the range
  of true differences the data are compatible with. Entirely above 0: the arm does better; containing 0:
  it may well make no difference; its width says how precise the estimate is (more trials, narrower).
  This is Newcombe's hybrid score interval (method 10 of Newcombe 1998, built from the Wilson score
  intervals of both rates), not the textbook Wald interval, which is too narrow for small groups and for
  rates near 0 or 1 (for 0 of 50 against 0 of 50 it is the single point 0).
- `p_value`: two-sided: how likely a difference at least this large, either way, would be if both
  groups truly had the same rate. Small means "unlikely to be chance"; it is not the probability that
  the arm is better, and says nothing about how large the difference is.
- `test`: the test that gave the p-value. "z": the pooled two-proportion z-test (Agresti 2002, 3.1),
  for groups large enough for the normal approximation. "fisher": Fisher's exact test (two-sided: the
  sum of the probabilities of all tables with the same totals that are no more likely than the observed
  one, as R's fisher.test), used by the usual rule (Cochran 1954) when any expected count of the 2x2
  table (successes and failures of both groups; row total x column total / grand total) is below 5.
- `p_adjusted`: the p-value corrected for comparing several arms with the same control (Holm 1979,
  step-down): at 5 % each, five arms give a far larger chance than 5 % that one looks better by chance
  alone. Equal to `p_value` for a single comparison. An arm differs significantly from the control when
  p_adjusted < alpha.

The interval and the p-value come from different methods: close to the threshold they can disagree (an
interval just clear of 0 with p_adjusted just above alpha, or the reverse). Decisions (`winner`) use
p_adjusted; "winner" means "beats the control": see `winner`.

Edge cases, by design (no exception, no NaN or infinity): a group with no trials gives rates of None
for it, difference and interval None, p_value 1.0 and test "fisher" (its expected counts are 0: the only
possible table); equal rates (all or no successes in both groups included) give p_value exactly 1.0.
Counts of any size work (10^7 and far beyond): the z statistic is computed from exact integers, and
Fisher's test only runs for small expected counts, on log-probabilities. Negative counts, successes
above trials or counts that are not integers raise ValueError: callers validate their input.

References: Newcombe RG (1998), Interval estimation for the difference between independent proportions:
comparison of eleven methods, Statistics in Medicine 17:873-890. Wilson EB (1927), Probable inference,
the law of succession, and statistical inference, JASA 22:209-212. Holm S (1979), A simple sequentially
rejective multiple test procedure, Scandinavian Journal of Statistics 6:65-70. Fisher RA (1935), The logic
of inductive inference, JRSS 98:39-82. Cochran WG (1954), Some methods for strengthening the common chi2
tests, Biometrics 10:417-451. Agresti A (2002), Categorical Data Analysis, 2nd ed., Wiley.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Literal, TypeVar

K = TypeVar("K", bound=Hashable)
Counts = tuple[int, int]
"""(successes, trials) of one group."""

MIN_EXPECTED = 5
"""Fisher's exact test when any expected count of the 2x2 table is below this."""
_TIE = 1 + 1e-7
"""Tables this close in probability to the observed one count as equally likely (as R's fisher.test)."""


@dataclass(frozen=True)
class Comparison:
    """One arm against the control (see the module docstring for what each figure means)."""

    control_rate: float | None
    arm_rate: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float
    test: Literal["z", "fisher"]
    p_adjusted: float


def compare(control: Counts, arm: Counts, *, alpha: float = 0.05) -> Comparison:
    """Compare an arm's (successes, trials) with the control's: rates, difference (arm - control) with
    its 1 - alpha Newcombe interval, two-sided p-value (z-test, or Fisher's for small expected counts)."""
    xc, nc = _counts("control", control)
    xa, na = _counts("arm", arm)
    z = _z_quantile(alpha)
    if na == 0 or nc == 0:
        return Comparison(xc / nc if nc else None, xa / na if na else None, None, None, None, 1.0, "fisher", 1.0)
    successes, trials = xa + xc, na + nc
    small = min(na, nc) * min(successes, trials - successes) < MIN_EXPECTED * trials
    p_value = _fisher(xa, na, xc, nc) if small else _z_test(xa, na, xc, nc)
    difference = (xa * nc - xc * na) / (na * nc)
    low, high = _newcombe(xa, na, xc, nc, difference, z)
    return Comparison(xc / nc, xa / na, difference, low, high, p_value, "fisher" if small else "z", p_value)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given: the i-th smallest p is multiplied by
    (m - i + 1), never below the adjusted value of a smaller p (monotone), at most 1."""
    for p in p_values:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"a p-value is between 0 and 1, got {p!r}")
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def compare_arms(control: Counts, arms: Mapping[K, Counts], *, alpha: float = 0.05) -> dict[K, Comparison]:
    """`compare` for each arm, in the order of `arms`, with `p_adjusted` by Holm across the arms when
    more than one could be tested. The family is the arms with trials (and only when the control has
    some): a group nobody was sent to yet is no comparison, and keeps p_value = p_adjusted = 1.0."""
    _counts("control", control)
    _z_quantile(alpha)  # checked even without arms
    results = {key: compare(control, counts, alpha=alpha) for key, counts in arms.items()}
    tested = [key for key, result in results.items() if result.difference is not None]
    if len(tested) > 1:
        adjusted = holm([results[key].p_value for key in tested])
        for key, p_adjusted in zip(tested, adjusted, strict=True):
            results[key] = replace(results[key], p_adjusted=p_adjusted)
    return results


def winner(
    control_key: K,
    control: Counts,
    arms: Mapping[K, Counts],
    *,
    alpha: float = 0.05,
    min_sample: int = 100,
) -> K | None:
    """The arm that beats the control: significantly better (Holm-adjusted p < alpha across the arms,
    difference > 0), with at least `min_sample` trials, and the best rate among such arms (ties: the
    smaller adjusted p, then the first in `arms`). None when no arm qualifies or the control has fewer
    than `min_sample` trials.

    "Winner" means "beats the control", nothing more: the control is never the winner (an entry of
    `arms` under `control_key` is left out), and a winner is not shown to beat the other arms: an arm
    with a higher rate but too few trials, or not significant, is no winner and does not stop one.
    """
    if min_sample < 0:
        raise ValueError(f"min_sample is at least 0, got {min_sample!r}")
    others = {key: counts for key, counts in arms.items() if key != control_key}
    results = compare_arms(control, others, alpha=alpha)
    if _counts("control", control)[1] < min_sample:
        return None
    candidates = [
        (result.arm_rate, -result.p_adjusted, -position, key)
        for position, (key, result) in enumerate(results.items())
        if result.arm_rate is not None
        and result.difference is not None
        and result.difference > 0
        and result.p_adjusted < alpha
        and others[key][1] >= min_sample
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda candidate: candidate[:3])[3]


def _counts(name: str, counts: Counts) -> Counts:
    try:
        successes, trials = (operator.index(number) for number in counts)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: (successes, trials) are two integers, got {counts!r}") from exc
    if not 0 <= successes <= trials:
        raise ValueError(f"{name}: 0 <= successes <= trials, got {successes} of {trials}")
    return successes, trials


def _z_quantile(alpha: float) -> float:
    """z such that P(|Z| > z) = alpha for a standard normal Z."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha is between 0 and 1 (exclusive), got {alpha!r}")
    return -NormalDist().inv_cdf(alpha / 2)


def _z_test(xa: int, na: int, xc: int, nc: int) -> float:
    """Two-sided p of the pooled z-test. z = (xa/na - xc/nc) / sqrt(p (1 - p) (1/na + 1/nc)) with the
    pooled p = k/n, rewritten over exact integers: z = (xa nc - xc na) sqrt(n / (k (n - k) na nc)).
    0 < k < n here: otherwise an expected count is 0, and `compare` runs Fisher's test."""
    k, n = xa + xc, na + nc
    z = (xa * nc - xc * na) * math.sqrt(n / (k * (n - k) * na * nc))
    return min(1.0, math.erfc(abs(z) / math.sqrt(2)))


def _fisher(xa: int, na: int, xc: int, nc: int) -> float:
    """Two-sided p of Fisher's exact test: the arm's successes x follow the hypergeometric distribution
    given the totals; p sums P(x) over the x no more likely than the observed one.

    log P(x) - log P(lowest x) accumulate log P(x+1)/P(x) = log((na-x)(k-x)) - log((x+1)(nc-k+x+1)),
    products of exact integers: no overflow, and none of the precision lgamma differences lose at
    10^7 trials. Only called for an expected count below 5, so there are at most sqrt(5 n) tables."""
    k = xa + xc
    lowest, highest = max(0, k - nc), min(k, na)
    logs = [0.0]
    for x in range(lowest, highest):
        logs.append(logs[-1] + math.log((na - x) * (k - x)) - math.log((x + 1) * (nc - k + x + 1)))
    top = max(logs)
    weights = [math.exp(log - top) for log in logs]
    observed = weights[xa - lowest] * _TIE
    return min(1.0, math.fsum(w for w in weights if w <= observed) / math.fsum(weights))


def _wilson(successes: int, trials: int, z: float) -> tuple[float, float]:
    """Wilson score interval of one rate (Wilson 1927)."""
    rate = successes / trials
    z2n = z * z / trials
    centre = (rate + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(rate * (1 - rate) / trials + z2n / (4 * trials)) / (1 + z2n)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def _newcombe(xa: int, na: int, xc: int, nc: int, difference: float, z: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval (1998, method 10) of arm rate - control rate."""
    rate_a, rate_c = xa / na, xc / nc
    low_a, high_a = _wilson(xa, na, z)
    low_c, high_c = _wilson(xc, nc, z)
    low = difference - math.hypot(rate_a - low_a, high_c - rate_c)
    high = difference + math.hypot(high_a - rate_a, rate_c - low_c)
    return max(-1.0, low), min(1.0, high)
