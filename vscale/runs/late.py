"""A run summarised by its late window: the median over the last fraction of its logged steps, per layer
first and then over the layers (SPEC §3's order). One logged step of a max over layers is decided by an
outlier (R_GS swings 10-100x within a run's last quarter); the late-window median is not. `eval.py compare`
compares runs by it, and every wandb run's summary holds it."""

import math
import re

import numpy as np

WINDOW = 0.25
"""Fraction of a run's logged steps, the last ones, whose median summarises it."""
LAYER = re.compile(r"/layer_(\d+)$")
AGGREGATES = {
    "mean": np.mean,
    "median": np.median,
    "max": np.max,
    "min": np.min,
    "iqr": lambda x: np.quantile(x, 0.75) - np.quantile(x, 0.25),
}


def late_median(points: list[tuple[int, float]], window: float = WINDOW) -> float | None:
    """Median of the finite values at the last `window` fraction of the logged steps (at least one step)."""
    values = [v for _, v in sorted(points) if math.isfinite(v)]
    if not values:
        return None
    return float(np.median(values[-max(1, math.ceil(window * len(values))) :]))


def layer_medians(
    series: dict[str, list[tuple[int, float]]], quantity: str, window: float = WINDOW
) -> dict[int, float]:
    """{layer: late median} of a per-layer quantity's `<quantity>/layer_<l>` columns, in layer order (layers with no
    finite value left out)."""
    found = {
        int(m.group(1)): points
        for k, points in series.items()
        if k.startswith(f"{quantity}/layer_") and (m := LAYER.search(k))
    }
    return {layer: v for layer in sorted(found) if (v := late_median(found[layer], window)) is not None}


def late_value(series: dict[str, list[tuple[int, float]]], name: str, window: float = WINDOW) -> float | None:
    """A metric's late-window value in one run. For `<quantity>/<mean|median|max|min|iqr>` of a per-layer
    quantity: each layer's late median first, then that aggregate over the layers; otherwise the
    metric's own late median. None where the run did not log it."""
    base, _, aggregate = name.rpartition("/")
    if aggregate in AGGREGATES and any(k.startswith(f"{base}/layer_") for k in series):
        per_layer = list(layer_medians(series, base, window).values())
        return float(AGGREGATES[aggregate](per_layer)) if per_layer else None
    return late_median(series[name], window) if name in series else None


def late_summary(
    series: dict[str, list[tuple[int, float]]], window: float = WINDOW, skip: tuple[str, ...] = ()
) -> dict[str, float]:
    """`late/<name>`: the late-window value of every logged metric but the per-layer columns (their layer
    aggregates `<quantity>/<mean|median|max|min|iqr>` are recomputed from the layers) and names holding `skip`."""
    names = [n for n in series if not LAYER.search(n) and not any(s in n for s in skip)]
    return {f"late/{n}": v for n in names if (v := late_value(series, n, window)) is not None}
