"""The statistics of eval.py compare (vscale.eval.stats), each against a computation written here: late-window
medians by hand, the geometric mean ratio from the per-seed ratios, and the Wilcoxon signed-rank p-value by
enumerating every assignment of signs to the ranks (the exact null distribution)."""

import itertools
import math
import statistics

import numpy as np
import pytest

from vscale.eval import stats
from vscale.runs import late


def exact_signed_rank_p(d: list[float]) -> float:
    """Two-sided exact p of the signed-rank statistic (no ties, no zeros): the share of the 2^n sign
    assignments whose positive-rank sum is at least as far from n(n+1)/4 as the observed one."""
    ranks = {v: r for r, v in enumerate(sorted(abs(x) for x in d), start=1)}
    observed = sum(ranks[abs(x)] for x in d if x > 0)
    centre = len(d) * (len(d) + 1) / 4
    sums = [
        sum(r for r, sign in zip(ranks.values(), signs) if sign) for signs in itertools.product([0, 1], repeat=len(d))
    ]
    return sum(abs(s - centre) >= abs(observed - centre) - 1e-9 for s in sums) / len(sums)


def test_a_runs_late_median_reads_the_last_quarter_of_its_logged_steps():
    points = [
        (s, float(v))
        for s, v in zip(range(9, 200, 10), [5, 1, 7, 3, 9, 2, 8, 4, 6, 0, 11, 13, 12, 20, 15, 14, 30, 16, 18, 17])
    ]
    assert late.late_median(points) == statistics.median([30, 16, 18, 17, 14])  # ceil(0.25 * 20) = 5 steps
    assert late.late_median(points, window=1.0) == statistics.median(v for _, v in points)
    assert late.late_median([(9, float("nan")), (19, 4.0)]) == 4.0 and late.late_median([]) is None


def test_an_aggregate_over_layers_takes_each_layers_late_median_first():
    """The max over layers of late medians, not the late median of each step's max (a spike in one layer at one step
    would decide the latter)."""
    series = {
        "gsink/ratio/layer_0": [(0, 1.0), (1, 100.0), (2, 1.0), (3, 1.0)],
        "gsink/ratio/layer_1": [(0, 5.0), (1, 5.0), (2, 6.0), (3, 5.0)],
        "gsink/ratio/max": [(0, 5.0), (1, 100.0), (2, 6.0), (3, 5.0)],
    }
    assert late.late_value(series, "gsink/ratio/max", window=0.75) == 5.0
    assert late.late_value(series, "gsink/ratio/median", window=0.75) == statistics.median([1.0, 5.0])
    assert late.late_value(series, "train/loss") is None


def test_a_ratio_effect_is_the_geometric_mean_ratio_with_the_exact_signed_rank_p():
    off = {s: v for s, v in enumerate([120.0, 300.0, 80.0, 1000.0, 45.0, 600.0])}
    learned = {s: v for s, v in enumerate([10.0, 40.0, 30.0, 50.0, 50.0, 20.0])}
    effect = stats.paired_effect("gsink/ratio/max", learned, off)
    ratios = [learned[s] / off[s] for s in off]
    assert effect.scale == "ratio" and effect.n == 6
    assert effect.estimate == pytest.approx(math.prod(ratios) ** (1 / 6))
    assert effect.per_seed == pytest.approx(dict(enumerate(ratios)))
    assert effect.p == pytest.approx(exact_signed_rank_p([math.log(r) for r in ratios]))
    assert effect.low < effect.estimate < effect.high


def test_a_loss_effect_is_the_mean_difference():
    off = {0: 2.50, 1: 2.48, 2: 2.52, 3: 2.49, 4: 2.51}
    learned = {0: 2.47, 1: 2.495, 2: 2.50, 3: 2.445, 4: 2.522}  # differences of distinct sizes: no ties in the ranks
    effect = stats.paired_effect("val/loss", learned, off)
    assert effect.scale == "difference" and effect.estimate == pytest.approx(
        statistics.mean(learned[s] - off[s] for s in off)
    )
    assert effect.p == pytest.approx(exact_signed_rank_p([learned[s] - off[s] for s in off]))


def test_a_direction_is_stated_only_when_the_interval_and_the_test_agree():
    off = {s: 100.0 * (1 + 0.1 * s) for s in range(10)}
    clear = stats.paired_effect("gsink/ratio/max", {s: v / 10 for s, v in off.items()}, off)
    assert clear.established and clear.high < 1
    assert clear.direction("learned", "off").endswith(": learned lower than off")
    noisy = stats.paired_effect("gsink/ratio/max", {s: v * (2.0 if s % 2 else 0.5) for s, v in off.items()}, off)
    assert not noisy.established and noisy.low < 1 < noisy.high
    assert noisy.direction("learned", "off").endswith(": no difference established between learned and off")
    six = {s: off[s] / 10 for s in range(5)} | {5: off[5] * 1.01}
    split = stats.paired_effect("gsink/ratio/max", six, {s: off[s] for s in range(6)})
    assert split.excludes_null and split.p == pytest.approx(4 / 64) and not split.established, (
        "5 of 6 seeds far lower, the sixth a little higher: W+ = 1, two-sided p = 2 x 2/64"
    )


def test_below_six_seeds_there_is_no_interval_and_so_no_direction():
    """At 5 seeds the exact signed-rank test's smallest two-sided p is 2/32 = 0.0625, and a bootstrap interval of 5
    differences is hardly wider than their range."""
    few = stats.paired_effect("gsink/ratio/max", {s: 1.0 + s for s in range(5)}, {s: 10.0 + 10 * s for s in range(5)})
    assert few.p == pytest.approx(2 / 32) and not few.excludes_null and not few.established
    assert few.bounds == "none at n = 5" and "(95% CI none at n = 5;" in few.direction("learned", "off")


def test_benjamini_hochberg_adjusts_a_family_as_computed_by_hand():
    """Ranked 0.01, 0.02, 0.021, 0.5 of m = 4: p x m / rank gives 0.04, 0.04, 0.028, 0.5; each adjusted p is the
    smallest of these at its rank or above, so the third's 0.028 lowers the first two."""
    assert stats.adjusted([0.5, 0.021, 0.01, 0.02]) == pytest.approx([0.5, 0.028, 0.028, 0.028])
    assert stats.adjusted([0.04, 0.001]) == pytest.approx([0.04, 0.002]), (
        "ranked 0.001, 0.04: 0.001 x 2 / 1, 0.04 x 2 / 2"
    )
    assert stats.adjusted([]) == []


def test_a_direction_is_established_on_the_p_adjusted_over_its_family():
    off = {s: 100.0 * (1 + 0.1 * s) for s in range(6)}
    lower = stats.paired_effect("gsink/ratio/max", {s: v / 10 for s, v in off.items()}, off)
    unrelated = stats.paired_effect("sink/alpha/max", {s: v * (2.0 if s % 2 else 0.5) for s, v in off.items()}, off)
    assert lower.p == pytest.approx(2 / 64) and lower.established, (
        "alone (a family of one), 6 of 6 seeds lower: p = 2/64"
    )
    first, second = stats.corrected([lower, unrelated])
    assert second.p > 0.0625 and second.p_adjusted == second.p, "ranked second of 2: p x 2 / 2"
    assert first.p == lower.p and first.p_adjusted == pytest.approx(0.0625) and not first.established, (
        "ranked first: 2/64 x 2 / 1"
    )
    assert first.direction("learned", "off").endswith(
        "Wilcoxon p = 0.031, adjusted 0.062, n = 6): no difference established between learned and off"
    )


def test_a_t_interval_narrows_with_seeds_as_by_the_table():
    """t(0.975; 9) = 2.2622 and t(0.975; 19) = 2.0930 from a t table."""
    assert stats.half_width(1.0, 10) == pytest.approx(2.2622 / math.sqrt(10), rel=1e-4)
    assert stats.half_width(1.0, 20) == pytest.approx(2.0930 / math.sqrt(20), rel=1e-4)


def test_the_seeds_an_effect_needs_are_the_fewest_whose_interval_excludes_no_effect():
    """Log ratios -1, -2, -1, -2: mean -1.5, sd sqrt(1/3) = 0.577. At 95%: 3 seeds (t(0.975; 2) = 4.303: 4.303 x 0.577 /
    sqrt(3) = 1.43 < 1.5; 2 seeds give 12.7 x 0.577 / sqrt(2) = 5.2). At the strictest level of 10 tests, 1 - 0.05/10:
    t(0.9975; 3) = 7.453 gives 2.15 at 4 seeds, t(0.9975; 4) = 5.598 gives 1.44 at 5."""
    effect = stats.Effect(
        "gsink/ratio/max",
        "ratio",
        4,
        math.exp(-1.5),
        0.1,
        0.5,
        0.1,
        {s: math.exp(d) for s, d in enumerate([-1, -2, -1, -2])},
    )
    assert effect.spread == pytest.approx(math.sqrt(1 / 3))
    assert stats.seeds_to_exclude_null(effect) == 3
    assert stats.seeds_to_exclude_null(effect, tests=10) == 5
    assert stats.seeds_to_exclude_null(effect, most=2) is None


def test_seeds_pair_by_number_and_one_pair_gives_no_effect():
    assert stats.paired_effect("x", {0: 1.0, 5: 2.0}, {0: 2.0, 6: 3.0}) is None
    effect = stats.paired_effect("x", {0: 1.0, 5: 2.0, 7: 9.0}, {0: 2.0, 5: 8.0, 6: 3.0})
    assert effect.per_seed == pytest.approx({0: 0.5, 5: 0.25})


def test_the_bootstrap_interval_is_the_same_on_every_call():
    d = np.log([0.5, 0.3, 0.9, 0.2, 1.1, 0.4, 0.6])
    assert stats.interval(d) == stats.interval(d)


def test_bands_are_geometric_on_log_axes_and_arithmetic_on_linear_ones():
    centre, low, high = stats.geometric_band([10.0, 1000.0])
    assert (
        centre == pytest.approx(100.0)
        and low * high == pytest.approx(centre**2)
        and high / centre == pytest.approx(math.exp(np.std(np.log([10, 1000]), ddof=1)))
    )
    assert stats.arithmetic_band([1.0, 3.0]) == pytest.approx((2.0, 2.0 - math.sqrt(2), 2.0 + math.sqrt(2)))
    assert stats.geometric_band([4.0]) == (4.0, None, None)
