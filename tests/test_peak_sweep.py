"""scripts/peak_sweep.py's growth fit: a power law through a run's logged ratios, and the steps it predicts for each
target, checked on points whose law is known."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("peak_sweep", ROOT / "scripts" / "peak_sweep.py")
peak_sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peak_sweep)


def test_a_power_law_predicts_the_steps_to_each_target():
    points = [(s, 0.1 * s**0.5) for s in range(49, 2000, 50)]  # 10x at step 10^4, 100x at 10^6
    fit = peak_sweep.growth(points)
    assert fit["exponent"] == pytest.approx(0.5)
    assert fit["scale"] == pytest.approx(0.1)
    assert fit["steps_to"] == {"10": 10_000, "100": 1_000_000}


def test_a_ratio_that_does_not_rise_predicts_no_step():
    fit = peak_sweep.growth([(s, 5.0 - 0.001 * s) for s in range(49, 2000, 50)])
    assert fit["steps_to"] == {"10": None, "100": None}


def test_the_curve_keeps_log_spaced_points_from_first_to_last():
    points = [(s, float(s)) for s in range(49, 2000, 50)]
    steps = [s for s, _ in peak_sweep.growth(points)["curve"]]
    assert steps[0] == 49 and steps[-1] == 1999 and steps == sorted(steps)
    assert all(b / a < 2.5 for a, b in zip(steps, steps[1:]))


def test_a_variant_is_compared_with_the_base_only_at_the_seeds_both_ran():
    table = {
        "bb-peak": {"runs": {"0": {"peak": 2.0}, "1": {"peak": 4.0}, "2": {"peak": 8.0}}},
        "lever": {"runs": {"0": {"peak": 4.0}, "1": {"peak": 8.0}, "5": {"peak": 1.0}}},
    }
    peak_sweep.against_base(table)
    effect = table["lever"]["against_base"]
    assert (effect["n"], effect["per_seed"]) == (2, {0: pytest.approx(2.0), 1: pytest.approx(2.0)})
    assert effect["estimate"] == pytest.approx(2.0)  # the geometric mean of 4/2 and 8/4
    assert effect["p"] == effect["p_adjusted"] == pytest.approx(0.5)  # two seeds, both higher: the exact Wilcoxon p
    assert "against_base" not in table["bb-peak"]
