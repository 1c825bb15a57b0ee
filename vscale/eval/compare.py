"""`eval.py compare`: training runs side by side, grouped into arms (the seeds of one configuration), each
run summarised by its late window, each arm compared with a reference arm paired by seed (`vscale.eval.stats`)."""

import json
from dataclasses import asdict
from pathlib import Path

from vscale.cli_values import Strings, as_list
from vscale.diagnostics import late
from vscale.diagnostics.figures import layer_profile
from vscale.eval import runs, stats
from vscale.eval.curves import paired_effects, training_curves
from vscale.train.loggers import Series, read_metrics
from vscale.errors import ConfigError

CURVES = ["train/loss", "val/loss", "sink/alpha/max", "sink/rate/mean", "gsink/ratio/median", "gsink/ratio/max", "act/v_ratio/mean",
          "act/h_out_ratio/max"]


def compare(run: Strings | None = None, label: Strings | None = None, out: str = "compare", metrics: Strings | None = None,
            window: float = late.WINDOW, baseline: str | None = None):
    """Training runs side by side, grouped into arms (the seeds of one configuration). Each run is summarised by its
    late window (the median of the last `window` of its logged steps, per layer first, then over layers); each arm is
    compared with the reference arm paired by seed: the geometric mean ratio (ratios, norms) or the mean difference
    (losses), a bootstrap 95% interval and a Wilcoxon signed-rank test. Writes summary.md (one line per metric and arm
    saying which direction holds), summary.json, curves.png (each metric by step: each arm's mean with a band over its
    seeds, geometric on log axes), effects.png (the paired effect per seed) and profile.png (the per-layer profile at
    the end of training, mean ± std).

    Args:
        run: Run directories written by train.py (holding metrics.csv), as a list or one directory; an experiment
            directory (runs/<experiment>) stands for all its runs, a pattern with * or ? (runs/bb/*-off-seed*) for
            the directories it matches.
        label: Arm names, one per run (runs sharing a label are pooled) or one per arm. Default: each run directory's
            name minus its -seed<N> suffix (off, learned, gated-off, ...).
        out: Output directory.
        metrics: Metric names (metrics.csv columns, e.g. sink/alpha/max, gsink/ratio/layer_1) for the tables and curves;
            default: those of CURVES the runs logged.
        window: Fraction of each run's logged steps, the last ones, whose median summarises the run (0 < window <= 1).
        baseline: The reference arm the others are compared with, paired by the -seed<N> of their run directories;
            default: off, or softmax, when there is such an arm.
    """
    if not run:
        raise ConfigError('--run: give run directories or an experiment directory, e.g. --run "[runs/tiny/off-seed0, runs/tiny/learned-seed0]" or --run "[runs/bb]".')
    if not 0 < window <= 1:
        raise ConfigError(f"--window {window}: give the fraction of each run's logged steps to summarise, in (0, 1], e.g. 0.25.")
    run, label, metrics = map(as_list, (run, label, metrics))
    groups = runs.group(runs.expand(run), label)
    if baseline is not None and baseline not in groups:
        raise ConfigError(f"--baseline {baseline}: no such arm; the arms are {', '.join(groups)}.")
    reference = baseline or next((a for a in runs.BASELINES if a in groups), None)
    arms = {arm: [read_metrics(r) for r in members] for arm, members in groups.items()}
    for name in metrics or []:  # an aggregate over layers train.py does not log (e.g. act/v_ratio/min), from its layers
        arms = {arm: [runs.with_layer_aggregate(s, name) for s in series] for arm, series in arms.items()}
    metrics = runs.check_metrics(arms, metrics, CURVES)
    late = {arm: {m: late_by_seed(members, series, m, window) for m in metrics} for (arm, members), series in zip(groups.items(), arms.values())}
    effects = {arm: {m: e for m in metrics if (e := stats.paired_effect(m, late[arm][m], late[reference][m]))}
               for arm in arms if reference is not None and arm != reference}
    effects = {arm: by_metric for arm, by_metric in effects.items() if by_metric}  # arms sharing fewer than two seeds with it
    out_dir = Path(out)
    figures = [training_curves({arm: {m: runs.values_by_step(series, m) for m in metrics} for arm, series in arms.items()}, metrics,
                               out_dir / "curves.png", title="each arm over its seeds")]
    if any(effects.values()):
        figures.append(paired_effects(effects, reference, out_dir / "effects.png", f"late window, paired by seed, against {reference}"))
    ends = {arm: runs.final_profile(series, [q for q, _ in runs.PROFILE]) for arm, series in arms.items()}
    figures.append(layer_profile({a: means for a, (means, _) in ends.items()}, out_dir / "profile.png", runs.PROFILE,
                                 "per layer at the last logged step: mean over each arm's runs ± std", {a: stds for a, (_, stds) in ends.items()}))
    record = {"window": window, "baseline": reference, "metrics": metrics,
              "arms": {arm: {"runs": [str(r) for r in groups[arm]], "late": late[arm]} for arm in arms},
              "effects": {arm: {m: asdict(e) for m, e in by_metric.items()} for arm, by_metric in effects.items()}}
    (out_dir / "summary.json").write_text(json.dumps(record, indent=1))
    (out_dir / "summary.md").write_text("\n".join(["# Training runs compared", "", *summary_lines(record), *(f"![{f.stem}]({f.name})" for f in figures), ""]))
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
            seed = runs.seed_of(path)
            out[str(seed) if seed is not None else path.name] = value
    return out


def summary_lines(record: dict) -> list[str]:
    """summary.md from summary.json (`record`): the late-window table, then each arm against the reference, one
    line per metric. The README's study tables are these lines, rendered from the committed summary.json."""
    arms, metrics, reference = record["arms"], record["metrics"], record["baseline"]
    effects = {arm: {m: stats.Effect(**e) for m, e in by_metric.items()} for arm, by_metric in record["effects"].items()}
    n_runs = sum(len(a["runs"]) for a in arms.values())
    lines = [f"{n_runs} runs in {len(arms)} arms. Each run is summarised by its late window: the median "
             f"of the last {record['window']:.0%} of its logged steps (per layer first, then over the layers for /mean, /median, /max, /min). "
             "A cell is the median over the arm's runs with their range; an arm of one run shows its value alone.", "",
             "| arm | runs | " + " | ".join(metrics) + " |", "|" + " --- |" * (len(metrics) + 2)]
    for arm, a in arms.items():
        lines.append(f"| {arm} | {len(a['runs'])} | " + " | ".join(_cell(list(a["late"][m].values())) for m in metrics) + " |")
    lines.append("")
    if effects:
        lines += [f"**Against {reference}, paired by seed.** Ratios (and their intervals) are geometric means of arm / {reference} over "
                  "the seeds both ran, losses mean differences. A direction is stated when the bootstrap 95% interval excludes "
                  "no effect and the Wilcoxon signed-rank test gives p < 0.05.", ""]
        lines += [f"- {effect.direction(arm, reference)}" for arm, by_metric in effects.items() for effect in by_metric.values()]
        lines.append("")
    elif reference is None:
        lines += ["No reference arm (off or softmax; --baseline names another): no paired effects.", ""]
    return lines


def headline(record: dict, metric: str, noun: str) -> str:
    """One sentence: which arms have `metric` lower, higher, or not established against the reference."""
    effects = {arm: stats.Effect(**by_metric[metric]) for arm, by_metric in record["effects"].items() if metric in by_metric}
    groups = {"lower": [], "higher": [], "none": []}
    for arm, e in effects.items():
        groups["none" if not e.established else "lower" if e.estimate < e.null else "higher"].append(arm)
    parts = [f"{word} with {', '.join(arms)}" for word, arms in (("lower", groups["lower"]), ("higher", groups["higher"])) if arms]
    parts += [f"no difference established with {', '.join(groups['none'])}"] if groups["none"] else []
    return f"Against {record['baseline']}, {noun} (`{metric}`, late window, paired by seed): " + "; ".join(parts) + "."


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    median = ordered[len(ordered) // 2] if len(ordered) % 2 else (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2
    return f"{median:.3g}" if len(values) == 1 else f"{median:.3g} ({ordered[0]:.3g}-{ordered[-1]:.3g})"
