"""Statistics for comparing arms (the seeds of one configuration), in SPEC §3's order: a run is summarised
first, over the late window of its logged steps (`vscale.runs.late`); arms are compared last,
paired by seed against a reference arm, with scipy's bootstrap interval and Wilcoxon signed-rank test, the
p-values of a family of tests adjusted together (Benjamini-Hochberg).

One step's value of a max over layers, averaged over three seeds, is decided by one outlier (R_GS swings
10-100x within a run's last quarter); a late-window median per layer, and paired effects with an
interval, are not.
"""

import math
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05
RESAMPLES = 9999
MIN_SEEDS_FOR_INTERVAL = 6
"""The fewest paired seeds given an interval. Below it a bootstrap interval is hardly wider than the range of the
seeds' differences (it covers far less than 95%, and printed it looks more certain than it is), and the exact
signed-rank test cannot reach 0.05 either (its smallest two-sided p is 2/2^n: 0.0625 at 5 seeds, 0.031 at 6)."""
CORRECTION = "Benjamini-Hochberg"
"""Over a family of tests (scipy's false_discovery_control): the expected share of false directions among those
stated stays below ALPHA. Holm's family-wise bound is out of reach of the exact signed-rank test at 10 seeds: its
smallest p, 2/1024, times the 35 tests of an arms study is 0.068, so nothing could be stated whatever the runs."""


def is_ratio_scale(name: str, values: list[float]) -> bool:
    """Compared as ratios (log scale): positive magnitudes (norms, ratios, weights). Losses, and anything
    that can be 0 or negative, are compared as differences."""
    return "loss" not in name and all(v > 0 for v in values)


@dataclass
class Effect:
    """An arm against the reference arm on one metric, paired by seed. `scale` "ratio": the effect is
    the geometric mean of arm/reference (1 = no effect); "difference": the mean of arm - reference (0)."""

    metric: str
    scale: str
    n: int
    estimate: float
    low: float
    high: float
    p: float
    per_seed: dict[int, float] = field(default_factory=dict)
    p_adjusted: float | None = None
    """`p` adjusted over the family of tests it was decided in (`corrected`); alone, a family of one: `p`."""

    def __post_init__(self):
        if self.p_adjusted is None:
            self.p_adjusted = self.p

    @property
    def null(self) -> float:
        return 1.0 if self.scale == "ratio" else 0.0

    @property
    def excludes_null(self) -> bool:
        """Never below MIN_SEEDS_FOR_INTERVAL, whatever bounds an older result file stored."""
        return self.n >= MIN_SEEDS_FOR_INTERVAL and (self.low > self.null or self.high < self.null)

    @property
    def established(self) -> bool:
        """A direction is claimed only when the interval excludes no effect and the test, adjusted over its family,
        agrees."""
        return self.excludes_null and self.p_adjusted < ALPHA

    @property
    def verdict(self) -> str:
        """An established "lower" or "higher", else "none"."""
        return "none" if not self.established else "higher" if self.estimate > self.null else "lower"

    def direction(self, arm: str, reference: str) -> str:
        """One line: which direction holds, and whether the interval excludes no effect."""
        what = (
            f"{arm} / {reference} = {self.estimate:.3g}"
            if self.scale == "ratio"
            else f"{arm} - {reference} = {self.estimate:+.3g}"
        )
        up = sum(v > self.null for v in self.per_seed.values())
        verdict = (
            f"{arm} {self.verdict} than {reference}"
            if self.established
            else f"no difference established between {arm} and {reference}"
        )
        return (
            f"{self.metric}: {what} (95% CI {self.bounds}; higher in {up}/{self.n} seeds; "
            f"Wilcoxon p = {self.p:.2g}, adjusted {self.p_adjusted:.2g}, n = {self.n}): {verdict}"
        )

    @property
    def bounds(self) -> str:
        """The interval as printed: "low to high", or why there is none."""
        if self.n < MIN_SEEDS_FOR_INTERVAL:
            return f"none at n = {self.n}"
        return f"{self.low:.3g} to {self.high:.3g}"

    @property
    def spread(self) -> float:
        """The sample std of the per-seed differences the test is on (log ratios for ratios)."""
        d = [math.log(v) if self.scale == "ratio" else v for v in self.per_seed.values()]
        return float(np.std(d, ddof=1))


def paired_effect(
    metric: str, arm: dict[int, float], reference: dict[int, float], ratio: bool | None = None
) -> Effect | None:
    """`arm` and `reference` map a seed to a run's late-window value; the seeds both have are paired. `ratio`: the
    scale, decided over a whole study so that every pair of arms is compared on the same one; default: from these
    values (`is_ratio_scale`). None with fewer than two pairs (no interval)."""
    seeds = sorted(s for s in arm.keys() & reference.keys() if arm[s] is not None and reference[s] is not None)
    if len(seeds) < 2:
        return None
    a, r = np.array([arm[s] for s in seeds]), np.array([reference[s] for s in seeds])
    ratio = is_ratio_scale(metric, [*a, *r]) if ratio is None else ratio
    d = np.log(a) - np.log(r) if ratio else a - r
    low, high = interval(d)
    back = np.exp if ratio else (lambda x: x)
    return Effect(
        metric,
        "ratio" if ratio else "difference",
        len(seeds),
        float(back(d.mean())),
        float(back(low)),
        float(back(high)),
        signed_rank_p(d),
        {s: float(back(x)) for s, x in zip(seeds, d)},
    )


def adjusted(ps: list[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values of one family of tests, in their order."""
    return [float(q) for q in stats.false_discovery_control(ps, method="bh")] if ps else []


def corrected(effects: list[Effect]) -> list[Effect]:
    """The effects of one family of tests, each with its p adjusted over the family."""
    return [replace(e, p_adjusted=q) for e, q in zip(effects, adjusted([e.p for e in effects]))]


def half_width(spread: float, n: int, confidence: float = CONFIDENCE) -> float:
    """Half-width of a t interval of the mean of n paired differences whose std is `spread`: how an interval
    narrows with seeds (a planning figure; the study's own intervals are bootstrap)."""
    return float(stats.t.ppf(0.5 + confidence / 2, n - 1) * spread / math.sqrt(n))


def seeds_to_exclude_null(effect: Effect, tests: int = 1, most: int = 1000) -> int | None:
    """The fewest seeds at which an effect of this size and spread would have a t interval excluding no effect at the
    strictest level of a family of `tests` (1 - ALPHA / tests, Bonferroni's, which Benjamini-Hochberg never exceeds);
    None past `most`."""
    size = abs(math.log(effect.estimate) if effect.scale == "ratio" else effect.estimate)
    return next((n for n in range(2, most + 1) if half_width(effect.spread, n, 1 - ALPHA / tests) < size), None)


def interval(d: np.ndarray) -> tuple[float, float]:
    """Bootstrap 95% interval of the mean of the paired differences (BCa; percentile where BCa is undefined); none
    (NaN) below MIN_SEEDS_FOR_INTERVAL."""
    if len(d) < MIN_SEEDS_FOR_INTERVAL:
        return math.nan, math.nan
    if np.ptp(d) == 0:
        return float(d[0]), float(d[0])
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():  # BCa's warning where it is undefined: the percentile interval follows
            warnings.simplefilter("ignore")
            ci = stats.bootstrap(
                (d,),
                np.mean,
                confidence_level=CONFIDENCE,
                n_resamples=RESAMPLES,
                method=method,
                random_state=np.random.default_rng(0),
            ).confidence_interval
        if np.isfinite(ci.low) and np.isfinite(ci.high):
            return float(ci.low), float(ci.high)
    return math.nan, math.nan


def signed_rank_p(d: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of the paired differences (1 when all are zero)."""
    if not np.any(d):
        return 1.0
    return float(stats.wilcoxon(d).pvalue)


def geometric_band(values: list[float]) -> tuple[float, float | None, float | None]:
    """(geometric mean, lower, upper) with the band the geometric mean ÷/× the geometric std; no band for one value."""
    logs = np.log(values)
    centre = float(np.exp(logs.mean()))
    if len(values) < 2:
        return centre, None, None
    spread = float(np.exp(logs.std(ddof=1)))
    return centre, centre / spread, centre * spread


def arithmetic_band(values: list[float]) -> tuple[float, float | None, float | None]:
    """(mean, mean - std, mean + std) with the sample std; no band for one value."""
    centre = float(np.mean(values))
    if len(values) < 2:
        return centre, None, None
    spread = float(np.std(values, ddof=1))
    return centre, centre - spread, centre + spread
