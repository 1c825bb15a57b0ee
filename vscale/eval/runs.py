"""`eval.py compare`: training runs grouped into arms (the seeds of one configuration), every
metric as mean ± std over an arm's seeds, by step and at the end of training, from each run's
metrics.csv. An arm is a run directory's name minus its `-seed<N>` suffix (`off`, `learned`,
`gated-off`, ...; see `vscale.runs.identity`), or an explicit label. `eval.py run` pools the
measurements of an arm's checkpoints the same way (`checkpoint_arms`, `pool`)."""

import glob
import math
import re
from dataclasses import dataclass
from pathlib import Path

from vscale.errors import ConfigError
from vscale.runs import Series, arm_of, late

PROFILE = (
    ("sink/alpha", "attention to token 0 (alpha)"),
    ("gsink/ratio", "gradient-sink ratio R_GS"),
    ("act/v_ratio", "value norm, token 0 / early"),
    ("act/h_out_ratio", "h_out, token 0 / early"),
)
"""Panels of the per-layer profile at the end of training: (metric, title)."""


def expand(runs: list[str]) -> list[Path]:
    """The run directories named; an experiment directory (no metrics.csv of its own, run directories
    inside) stands for every run in it, in name order, and a pattern with *, ? or [...] for each directory
    it matches (`runs/bb/*-off-seed*`: the attention arms of an experiment; `runs/bb/off-seed[0-4]`)."""
    out = []
    for name in runs:
        named = (
            sorted(Path(p) for p in glob.glob(name) if Path(p).is_dir())
            if any(c in name for c in "*?[")
            else [Path(name)]
        )
        if not named:
            raise ConfigError(
                f"--run {name!r} matches no directory; give run directories, "
                "an experiment directory or a pattern that matches some."
            )
        for run in named:
            inside = sorted(p.parent for p in run.glob("*/metrics.csv"))
            out += inside if inside and not (run / "metrics.csv").is_file() else [run]
    return out


def checkpoint_arms(ckpts: list[str], labels: list[str], labelled: bool) -> dict[str, list[str]]:
    """{arm: labels of its checkpoints}: the arm of a train.py checkpoint is its run directory's
    (runs/<experiment>/<name>/checkpoints/x.ckpt), of a model directory its name, of an explicit
    label the label, each minus `-seed<N>`."""
    arms: dict[str, list[str]] = {}
    for ckpt, label in zip(ckpts, labels):
        path = Path(ckpt)
        name = label if labelled else path.parent.parent.name if path.parent.name == "checkpoints" else path.name
        arms.setdefault(arm_of(name), []).append(label)
    return arms


def leaves(tree, prefix: str = "") -> dict[str, float]:
    """The finite numbers of a nested dict, by dotted key (lists and text left out)."""
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in leaves(sub, f"{prefix}{key}.").items()}
    number = isinstance(tree, (int, float)) and not isinstance(tree, bool) and math.isfinite(tree)
    return {prefix[:-1]: float(tree)} if number else {}


def pool(results: dict[str, dict], arms: dict[str, list[str]]) -> dict[str, dict]:
    """{arm: {"checkpoints": labels, "results": {dotted key: {"mean", "std", "n"}}}}: every number
    that each of the arm's checkpoints measured, as mean and sample std (None for one checkpoint)."""
    pooled = {}
    for arm, labels in arms.items():
        flat = [leaves(results[label]) for label in labels]
        common = [k for k in flat[0] if all(k in f for f in flat[1:])]
        pooled[arm] = {"checkpoints": labels, "results": {k: vars(stat([f[k] for f in flat])) for k in common}}
    return pooled


BASELINES = ("off", "softmax")
"""Arms that are the reference when present: listed first in tables and legends."""


def group(runs: list[Path], labels: list[str] | None = None) -> dict[str, list[Path]]:
    """{arm: its runs}, a baseline arm (`BASELINES`) first, the others in order of first appearance. `labels` names the
    arm of each run (runs sharing a label are pooled), or renames the default arms (run name minus `-seed<N>`) in their
    order."""
    arms = [arm_of(Path(r).name) for r in runs]
    default = list(dict.fromkeys(arms))
    if labels is not None:
        if len(labels) == len(runs):
            arms = list(labels)
        elif len(labels) == len(default):
            arms = [labels[default.index(a)] for a in arms]
        else:
            raise ConfigError(
                f"--label: give one label per run ({len(runs)}) or per arm ({len(default)}: "
                f"{', '.join(default)}); got {len(labels)}."
            )
    groups: dict[str, list[Path]] = {}
    for arm, run in zip(arms, runs):
        groups.setdefault(arm, []).append(run)
    first = [a for a in BASELINES if a in groups][:1]
    return {a: groups[a] for a in [*first, *(a for a in groups if a not in first)]}


@dataclass
class Stat:
    """A metric over an arm's runs: the mean, the sample standard deviation (None for one run) and the run count."""

    mean: float
    std: float | None
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4g}" if self.std is None else f"{self.mean:.4g} ± {self.std:.2g}"


def stat(values: list[float]) -> Stat:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return Stat(mean, std, n)


def values_by_step(runs: list[Series], name: str) -> list[tuple[int, list[float]]]:
    """(step, the values of the runs that logged metric `name` at it), for every step any run did."""
    at: dict[int, list[float]] = {}
    for series in runs:
        for step, value in series.get(name, []):
            at.setdefault(step, []).append(value)
    return sorted(at.items())


def final(runs: list[Series], name: str) -> tuple[Stat, list[int]] | None:
    """The metric's last logged value in each run that has it, over those runs, and their steps; None if none has it."""
    last = [series[name][-1] for series in runs if series.get(name)]
    if not last:
        return None
    return stat([value for _, value in last]), [step for step, _ in last]


def final_profile(runs: list[Series], quantities) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and std over runs of each `<quantity>/layer_<l>` at each run's last logged step: the per-layer
    profile at the end of training (std 0 for a single run)."""
    means, stds = {}, {}
    names = {n for series in runs for n in series if n.startswith(tuple(f"{q}/layer_" for q in quantities))}
    for name in names:
        s, _ = final(runs, name)
        means[name], stds[name] = s.mean, s.std or 0.0
    return means, stds


def with_layer_aggregate(series: Series, name: str) -> Series:
    """The run's series with `name` = `<quantity>/<min|max|mean|median|iqr>` added, step by step over the layers of
    `<quantity>/layer_*`, when train.py did not log that aggregate itself (it logs mean, median, max)."""
    base, _, aggregate = name.rpartition("/")
    layers = [series[k] for k in series if k.startswith(f"{base}/layer_")]
    if name in series or aggregate not in late.AGGREGATES or not layers:
        return series
    steps = sorted(set.intersection(*({step for step, _ in points} for points in layers)))
    at = [dict(points) for points in layers]
    return {
        **series,
        name: [(step, float(late.AGGREGATES[aggregate]([values[step] for values in at]))) for step in steps],
    }


def check_metrics(arms: dict[str, list[Series]], metrics: list[str] | None, default: list[str]) -> list[str]:
    """The metrics to show: every one asked for, refused unless some run logged it (arms need not all have it: an
    intervention's own metrics), or, when none is asked for, those of `default` some run logged."""
    logged = {name for runs in arms.values() for series in runs for name in series}
    if metrics is None:
        if not (found := [m for m in default if m in logged]):
            raise ConfigError(
                f"--run: the runs logged none of {', '.join(default)}; name the metrics to show with --metrics."
            )
        return found
    if missing := [m for m in metrics if m not in logged]:
        summaries = sorted(n for n in logged if not re.search(r"/layer_\d+$", n))
        raise ConfigError(
            f"--metrics {missing}: no run logged them; metrics.csv has e.g. {', '.join(summaries[:12])}, and "
            "per-layer <name>/layer_<l> (the README's metric table lists them all)."
        )
    return metrics
