"""Statistics for comparing arms (the seeds of one configuration), in SPEC §3's order: a run is summarised
first, over the late window of its logged steps (`vscale.diagnostics.late`); arms are compared last,
paired by seed against a reference arm, with scipy's bootstrap interval and Wilcoxon signed-rank test.

One step's value of a max over layers, averaged over three seeds, is decided by one outlier (R_GS swings
10-100x within a run's last quarter); a late-window median per layer, and paired effects with an
interval, are not.
"""

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05
RESAMPLES = 9999


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

    @property
    def null(self) -> float:
        return 1.0 if self.scale == "ratio" else 0.0

    @property
    def excludes_null(self) -> bool:
        return self.low > self.null or self.high < self.null

    @property
    def established(self) -> bool:
        """A direction is claimed only when the interval excludes no effect and the test agrees (p < 0.05)."""
        return self.excludes_null and self.p < ALPHA

    def direction(self, arm: str, reference: str) -> str:
        """One line: which direction holds, and whether the interval excludes no effect."""
        what = f"{arm} / {reference} = {self.estimate:.3g}" if self.scale == "ratio" else f"{arm} - {reference} = {self.estimate:+.3g}"
        up = sum(v > self.null for v in self.per_seed.values())
        sense = "higher" if self.estimate > self.null else "lower"
        verdict = f"{arm} {sense} than {reference}" if self.established else f"no difference established between {arm} and {reference}"
        return (f"{self.metric}: {what} (95% CI {self.low:.3g} to {self.high:.3g}; higher in {up}/{self.n} seeds; "
                f"Wilcoxon p = {self.p:.2g}, n = {self.n}): {verdict}")


def paired_effect(metric: str, arm: dict[int, float], reference: dict[int, float]) -> Effect | None:
    """`arm` and `reference` map a seed to a run's late-window value; the seeds both have are paired.
    None with fewer than two pairs (no interval)."""
    seeds = sorted(s for s in arm.keys() & reference.keys() if arm[s] is not None and reference[s] is not None)
    if len(seeds) < 2:
        return None
    a, r = np.array([arm[s] for s in seeds]), np.array([reference[s] for s in seeds])
    ratio = is_ratio_scale(metric, [*a, *r])
    d = np.log(a) - np.log(r) if ratio else a - r
    low, high = interval(d)
    back = np.exp if ratio else (lambda x: x)
    return Effect(metric, "ratio" if ratio else "difference", len(seeds), float(back(d.mean())), float(back(low)), float(back(high)),
                  signed_rank_p(d), {s: float(back(x)) for s, x in zip(seeds, d)})


def interval(d: np.ndarray) -> tuple[float, float]:
    """Bootstrap 95% interval of the mean of the paired differences (BCa; percentile where BCa is undefined)."""
    if np.ptp(d) == 0:
        return float(d[0]), float(d[0])
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():  # BCa's warning where it is undefined: the percentile interval follows
            warnings.simplefilter("ignore")
            ci = stats.bootstrap((d,), np.mean, confidence_level=CONFIDENCE, n_resamples=RESAMPLES, method=method,
                                 random_state=np.random.default_rng(0)).confidence_interval
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
