"""`eval.py compare`: training runs side by side, grouped into arms (the seeds of one configuration), each
run summarised by its late window, each arm compared with a reference arm and with each other arm paired by seed
(`vscale.eval.stats`), each family of tests corrected together.

Two families: every arm x metric against the reference, which decides the directions stated; and every pair of the
other arms x metric, corrected apart, which decides only whether a sentence may call two arms different. Pooled, the
quadratic count of pairs would make the tests against the reference weaker the more arms were run beside them."""

import json
from dataclasses import asdict
from itertools import combinations
from pathlib import Path

from vscale.cli_values import Strings, as_list
from vscale.diagnostics.figures import layer_profile
from vscale.errors import ConfigError
from vscale.eval import runs, stats
from vscale.eval.curves import paired_effects, training_curves
from vscale.eval.verdicts import HALF, summary_lines
from vscale.runs import Series, late, read_metrics, seed_of

CURVES = [
    "train/loss",
    "val/loss",
    "sink/alpha/max",
    "sink/rate/mean",
    "gsink/ratio/median",
    "gsink/ratio/max",
    "act/v_ratio/mean",
    "act/h_out_ratio/max",
]


def compare(
    run: Strings | None = None,
    label: Strings | None = None,
    out: str = "compare",
    metrics: Strings | None = None,
    window: float = late.WINDOW,
    baseline: str | None = None,
    halves: bool | None = None,
):
    """Training runs side by side, grouped into arms (the seeds of one configuration). Each run is summarised by its
    late window (the median of the last `window` of its logged steps, per layer first, then over layers); each arm is
    compared with the reference arm, and each pair of the other arms with each other, paired by seed: the geometric mean
    ratio (ratios, norms) or the mean difference (losses), a bootstrap 95% interval and a Wilcoxon signed-rank test
    whose p is adjusted over its family (Benjamini-Hochberg). Writes summary.md (one line per metric and arm saying
    which direction holds, a table of the arms against each other), summary.json, curves.png (each metric by step: each
    arm's mean with a band over its seeds, geometric on log axes), effects.png (the paired effect per seed) and
    profile.png (the per-layer profile at the end of training, mean ± std).

    Args:
        run: Run directories written by train.py (holding metrics.csv), as a list or one directory; an experiment
            directory (runs/<experiment>) stands for all its runs, a pattern with *, ? or [...] (runs/bb/*-off-seed*,
            runs/bb/off-seed[0-4]) for the directories it matches; in a list, quote a pattern with [...]
            ("[\"runs/bb/off-seed[0-4]\", runs/bb/learned-seed0]").
        label: Arm names, one per run (runs sharing a label are pooled) or one per arm. Default: each run directory's
            name minus its -seed<N> suffix (off, learned, gated-off, ...).
        out: Output directory.
        metrics: Metric names (metrics.csv columns, e.g. sink/alpha/max, gsink/ratio/layer_1) for the tables and curves;
            default: those of CURVES the runs logged.
        window: Fraction of each run's logged steps, the last ones, whose median summarises the run (0 < window <= 1).
        baseline: The reference arm the others are compared with, paired by the -seed<N> of their run directories;
            default: off, or softmax, when there is such an arm.
        halves: Also compare on each half of the runs' seeds (0-9 and 10-19 of 0-19), marking the directions stated
            that hold in both; default: when the runs have at least 20 seeds.
    """
    if not run:
        raise ConfigError(
            "--run: give run directories or an experiment directory, e.g. "
            '--run "[runs/tiny/off-seed0, runs/tiny/learned-seed0]" or --run "[runs/bb]".'
        )
    if not 0 < window <= 1:
        raise ConfigError(
            f"--window {window}: give the fraction of each run's logged steps to summarise, in (0, 1], e.g. 0.25."
        )
    run, label, metrics = map(as_list, (run, label, metrics))
    groups = runs.group(runs.expand(run), label)
    if baseline is not None and baseline not in groups:
        raise ConfigError(f"--baseline {baseline}: no such arm; the arms are {', '.join(groups)}.")
    reference = baseline or next((a for a in runs.BASELINES if a in groups), None)
    arms = {arm: [read_metrics(r) for r in members] for arm, members in groups.items()}
    for name in metrics or []:  # an aggregate over layers train.py does not log (e.g. act/v_ratio/min), from its layers
        arms = {arm: [runs.with_layer_aggregate(s, name) for s in series] for arm, series in arms.items()}
    metrics = runs.check_metrics(arms, metrics, CURVES)
    record = late_record(groups, arms, metrics, window, reference)
    record |= analysis(record, halves)
    write_summary(record, arms, Path(out))


def late_record(
    groups: dict[str, list[Path]],
    arms: dict[str, list[Series]],
    metrics: list[str],
    window: float,
    reference: str | None,
) -> dict:
    """summary.json before its comparisons: each arm's runs and their late values by metric and seed."""
    return {
        "window": window,
        "baseline": reference,
        "metrics": metrics,
        "arms": {
            arm: {
                "runs": [str(r) for r in members],
                "late": {m: late_by_seed(members, series, m, window) for m in metrics},
            }
            for (arm, members), series in zip(groups.items(), arms.values())
        },
    }


def write_summary(record: dict, arms: dict[str, list[Series]], out_dir: Path) -> None:
    """summary.json, the figures and summary.md of a compared `record`, the runs' `arms` drawn; the directions stated
    printed."""
    reference, metrics = record["baseline"], record["metrics"]
    figures = [
        training_curves(
            {arm: {m: runs.values_by_step(series, m) for m in metrics} for arm, series in arms.items()},
            metrics,
            out_dir / "curves.png",
            title="each arm over its seeds",
        )
    ]
    effects = {
        arm: {m: stats.Effect(**e) for m, e in by_metric.items()} for arm, by_metric in record["effects"].items()
    }
    if effects:
        figures.append(
            paired_effects(
                effects, reference, out_dir / "effects.png", f"late window, paired by seed, against {reference}"
            )
        )
    ends = {arm: runs.final_profile(series, [q for q, _ in runs.PROFILE]) for arm, series in arms.items()}
    figures.append(
        layer_profile(
            {a: means for a, (means, _) in ends.items()},
            out_dir / "profile.png",
            runs.PROFILE,
            "per layer at the last logged step: mean over each arm's runs ± std",
            {a: stds for a, (_, stds) in ends.items()},
        )
    )
    (out_dir / "summary.json").write_text(json.dumps(record, indent=1))
    (out_dir / "summary.md").write_text(
        "\n".join(
            ["# Training runs compared", "", *summary_lines(record), *(f"![{f.stem}]({f.name})" for f in figures), ""]
        )
    )
    print(f"wrote {out_dir / 'summary.md'}, summary.json and {', '.join(f.name for f in figures)}")
    for arm, by_metric in effects.items():
        for effect in by_metric.values():
            print(effect.direction(arm, reference))


def late_by_seed(members: list[Path], series: list[Series], metric: str, window: float) -> dict[str, float]:
    """{seed (or the run's name, without a -seed<N> suffix): late-window value} of the runs that logged `metric`."""
    out = {}
    for path, s in zip(members, series):
        value = late.late_value(s, metric, window)
        if value is not None:
            seed = seed_of(path.name)
            out[str(seed) if seed is not None else path.name] = value
    return out


def analysis(record: dict, halves: bool | None = None) -> dict:
    """The comparisons of a summary.json, from its late values alone: each arm against the baseline, each pair of the
    other arms, each family corrected; with `halves` (default: at least 2 x HALF seeds) the same on each half of
    the study's seeds. scripts/study_tables.py upgrades a committed summary with it, without the runs."""
    late = {arm: a["late"] for arm, a in record["arms"].items()}
    out = comparisons(late, record["baseline"])
    seeds = study_seeds(late)
    if halves is None:
        halves = len(seeds) >= 2 * HALF
    if halves and len(seeds) < 4:
        raise ConfigError(f"--halves: the runs have {len(seeds)} seeds; halves of two pairs each need at least 4.")
    if halves:
        middle = len(seeds) // 2
        out["halves"] = [
            {"seeds": half, **comparisons(late, record["baseline"], set(half))}
            for half in (seeds[:middle], seeds[middle:])
        ]
    return out


def comparisons(
    late: dict[str, dict[str, dict[str, float]]], reference: str | None, seeds: set[str] | None = None
) -> dict:
    """{correction, effects: {arm: {metric: effect}}, pairwise: {arm: {other: {metric: effect}}}} over `seeds` (default:
    all), `late` being {arm: {metric: {seed: late value}}}; an arm against another is arm / other (or arm - other)."""
    others = [a for a in late if a != reference]
    effects = _family(late, [(a, reference) for a in others] if reference is not None else [], seeds)
    pairwise = _family(late, list(combinations(others, 2)), seeds)
    count = lambda family: sum(len(by_metric) for by_other in family.values() for by_metric in by_other.values())
    return {
        "correction": {
            "method": stats.CORRECTION,
            "alpha": stats.ALPHA,
            "tests": {"effects": count(effects), "pairwise": count(pairwise)},
        },
        "effects": {arm: by_other[reference] for arm, by_other in effects.items()},
        "pairwise": pairwise,
    }


def _family(late: dict, pairs: list[tuple[str, str]], seeds: set[str] | None) -> dict:
    """One family of tests: each pair on every metric both arms logged, sharing at least two seeds, p adjusted
    together."""
    pick = lambda values: {s: v for s, v in values.items() if seeds is None or s in seeds}
    ratio = {
        m: stats.is_ratio_scale(m, [v for by_metric in late.values() for v in by_metric.get(m, {}).values()])
        for m in {m for by_metric in late.values() for m in by_metric}
    }  # one scale per metric for every pair in the study
    found = [
        ((a, b), e)
        for a, b in pairs
        for m in late[a]
        if m in late[b] and (e := stats.paired_effect(m, pick(late[a][m]), pick(late[b][m]), ratio[m]))
    ]
    out = {}
    for ((a, b), _), effect in zip(found, stats.corrected([e for _, e in found])):
        out.setdefault(a, {}).setdefault(b, {})[effect.metric] = asdict(effect)
    return out


def study_seeds(late: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """The seeds any arm ran, in numeric order."""
    seeds = {s for by_metric in late.values() for values in by_metric.values() for s in values}
    return sorted(seeds, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
