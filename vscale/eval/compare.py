"""`eval.py compare`: training runs side by side, grouped into arms (the seeds of one configuration), each
run summarised by its late window, each arm compared with a reference arm and with each other arm paired by seed
(`vscale.eval.stats`), each family of tests corrected together.

Two families: every arm x metric against the reference, which decides the directions stated; and every pair of the
other arms x metric, corrected apart, which decides only whether a sentence may call two arms different. Pooled, the
quadratic count of pairs would make the tests against the reference weaker the more arms were run beside them."""

import json
import math
from dataclasses import asdict
from itertools import combinations
from pathlib import Path

from vscale.cli_values import Strings, as_list
from vscale.diagnostics.figures import layer_profile
from vscale.errors import ConfigError
from vscale.eval import runs, stats
from vscale.eval.curves import paired_effects, training_curves
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
    ratio (ratios, norms) or the mean difference (losses), a bootstrap 95% interval and a Wilcoxon signed-rank test whose
    p is adjusted over its family (Benjamini-Hochberg). Writes summary.md (one line per metric and arm saying which
    direction holds, a table of the arms against each other), summary.json, curves.png (each metric by step: each arm's
    mean with a band over its seeds, geometric on log axes), effects.png (the paired effect per seed) and profile.png
    (the per-layer profile at the end of training, mean ± std).

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
        halves: Also compare on each half of the runs' seeds (0-9 and 10-19 of 0-19), marking the directions stated
            that hold in both; default: when the runs have at least 20 seeds.
    """
    if not run:
        raise ConfigError(
            '--run: give run directories or an experiment directory, e.g. --run "[runs/tiny/off-seed0, runs/tiny/learned-seed0]" or --run "[runs/bb]".'
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
    record = {
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
    record |= analysis(record, halves)
    out_dir = Path(out)
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


HALF = 10
"""Seeds per half: the halves are compared by default when the runs have at least 2 x HALF seeds."""


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
    """One family of tests: each pair on every metric both arms logged, sharing at least two seeds, p adjusted together."""
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


def summary_lines(record: dict) -> list[str]:
    """summary.md from summary.json (`record`): the late-window table, each arm against the reference (one line per
    metric), the arms against each other, the halves. The README's study tables are these lines, rendered from the
    committed summary.json."""
    arms, metrics, reference = record["arms"], record["metrics"], record["baseline"]
    effects = {
        arm: {m: stats.Effect(**e) for m, e in by_metric.items()} for arm, by_metric in record["effects"].items()
    }
    n_runs = sum(len(a["runs"]) for a in arms.values())
    lines = [
        f"{n_runs} runs in {len(arms)} arms. Each run is summarised by its late window: the median "
        f"of the last {record['window']:.0%} of its logged steps (per layer first, then over the layers for /mean, /median, /max, /min). "
        "A cell is the median over the arm's runs with their range; an arm of one run shows its value alone.",
        "",
        "| arm | runs | " + " | ".join(metrics) + " |",
        "|" + " --- |" * (len(metrics) + 2),
    ]
    for arm, a in arms.items():
        lines.append(
            f"| {arm} | {len(a['runs'])} | "
            + " | ".join(median_cell(list(a["late"][m].values())) for m in metrics)
            + " |"
        )
    lines.append("")
    tests = record["correction"]["tests"]
    if effects:
        lines += [
            f"**Against {reference}, paired by seed.** Ratios (and their intervals) are geometric means of arm / {reference} over "
            "the seeds both ran, losses mean differences. A direction is stated when the bootstrap 95% interval excludes "
            f"no effect and the Wilcoxon signed-rank p, adjusted over the family of the {tests['effects']} tests against {reference} "
            f"(every arm x metric; {stats.CORRECTION}, scipy.stats.false_discovery_control), is below {stats.ALPHA}; each line "
            "gives the raw and the adjusted p"
            + (", and whether a stated direction holds in both halves of the seeds" if "halves" in record else "")
            + ".",
            "",
        ]
        lines += [
            f"- {effect.direction(arm, reference)}" + _mark(held(record, "effects", arm, effect.metric))
            for arm, by_metric in effects.items()
            for effect in by_metric.values()
        ]
        lines.append("")
    elif reference is None:
        lines += ["No reference arm (off or softmax; --baseline names another): no paired effects.", ""]
    if record["pairwise"]:
        lines += [
            f"**Arms against each other, paired by seed** (a / b, or a - b for losses): estimate (95% CI); the raw and the adjusted p, "
            f"adjusted over their own family of {tests['pairwise']} tests (every pair x metric; {stats.CORRECTION}); a direction "
            "where established. Only these comparisons may tell two arms apart.",
            "",
            *_pairwise_table(record),
            "",
        ]
    return lines + _halves_table(record)


def _pairwise_table(record: dict) -> list[str]:
    pairs = [(a, b, by_metric) for a, by_other in record["pairwise"].items() for b, by_metric in by_other.items()]
    metrics = [m for m in record["metrics"] if any(m in by_metric for *_, by_metric in pairs)]
    lines = ["| a / b | " + " | ".join(metrics) + " |", "|" + " --- |" * (len(metrics) + 1)]
    for a, b, by_metric in pairs:
        lines.append(
            f"| {a} / {b} | "
            + " | ".join(
                _brief(stats.Effect(**by_metric[m]), held(record, "pairwise", a, b, m)) if m in by_metric else "-"
                for m in metrics
            )
            + " |"
        )
    return lines


def _halves_table(record: dict) -> list[str]:
    if "halves" not in record or not record["effects"]:
        return []
    metrics = [m for m in record["metrics"] if any(m in by_metric for by_metric in record["effects"].values())]
    lines = [
        f"**The two halves of the seeds**, each against {record['baseline']} as above, adjusted over its own family: estimate (95% CI); "
        "raw and adjusted p; a direction where established.",
        "",
        "| arm | seeds | " + " | ".join(metrics) + " |",
        "|" + " --- |" * (len(metrics) + 2),
    ]
    for arm in record["effects"]:
        for half in record["halves"]:
            by_metric = half["effects"].get(arm, {})
            lines.append(
                f"| {arm} | {half['seeds'][0]}-{half['seeds'][-1]} | "
                + " | ".join(_brief(stats.Effect(**by_metric[m])) if m in by_metric else "-" for m in metrics)
                + " |"
            )
    return [*lines, ""]


def held(record: dict, section: str, *keys: str) -> str:
    """For a direction the summary states ("effects" or "pairwise", then the arms and the metric): whether each half of
    the seeds states it too; "" without halves or for no stated direction."""
    full = _find(record[section], keys)
    if "halves" not in record or full is None or not full.established:
        return ""
    both = all((e := _find(half[section], keys)) is not None and e.verdict == full.verdict for half in record["halves"])
    return "in both halves" if both else "not in both halves"


def _find(part: dict, keys: tuple[str, ...]) -> stats.Effect | None:
    for key in keys:
        part = part.get(key, {})
    return stats.Effect(**part) if part else None


def _mark(held: str) -> str:
    return f"; {held}" if held else ""


def _brief(e: stats.Effect, held: str = "") -> str:
    return (
        f"{e.estimate:.3g} ({e.low:.3g} to {e.high:.3g}); p {e.p:.2g}, adjusted {e.p_adjusted:.2g}"
        + (f"; **{e.verdict}**" if e.established else "")
        + _mark(held)
    )


RANK = {"lower": 0, "none": 1, "higher": 2}
WORDS = {"lower": "lower with", "higher": "higher with", "none": "no difference established with"}


def headline(record: dict, metric: str, noun: str) -> str:
    """Which arms have `metric` lower, higher, or not established against the reference, each with its estimate; two arms
    on different sides are called different only where their direct comparison establishes it, and said not to be
    distinguished otherwise (that one passes its test and another does not is no difference between them)."""
    effects = {
        arm: stats.Effect(**by_metric[metric]) for arm, by_metric in record["effects"].items() if metric in by_metric
    }
    parts = [
        WORDS[side]
        + " "
        + ", ".join(f"{arm} ({_estimate(effects[arm])}{_mark(held(record, 'effects', arm, metric))})" for arm in arms)
        for side in ("lower", "higher", "none")
        if (arms := [a for a, e in effects.items() if e.verdict == side])
    ]
    sentence = (
        f"Against {record['baseline']}, {noun} (`{metric}`, late window, paired by seed): " + "; ".join(parts) + "."
    )
    across = [(a, b) for a, b in combinations(effects, 2) if effects[a].verdict != effects[b].verdict]
    expected = {(a, b): "lower" if RANK[effects[a].verdict] < RANK[effects[b].verdict] else "higher" for a, b in across}
    apart = [(a, b) for a, b in across if _pair_verdict(record, a, b, metric) == expected[a, b]]
    if apart:
        sentence += (
            " Distinguished by their direct comparison: "
            + ", ".join(f"{a} {expected[a, b]} than {b}" for a, b in apart)
            + "."
        )
    if together := [(a, b) for a, b in across if (a, b) not in apart]:
        sentence += (
            " Not distinguished from each other by their direct comparison: "
            + ", ".join(f"{a} and {b}" for a, b in together)
            + "."
        )
    return sentence


def _pair_verdict(record: dict, a: str, b: str, metric: str) -> str:
    """a against b in their direct comparison: "lower", "higher", or "none" (also where they share too few seeds)."""
    if (e := _find(record.get("pairwise", {}), (a, b, metric))) is not None:
        return e.verdict
    e = _find(record.get("pairwise", {}), (b, a, metric))
    return {"lower": "higher", "higher": "lower"}.get(e.verdict, "none") if e is not None else "none"


def _estimate(e: stats.Effect) -> str:
    value = f"{e.estimate:.3g}" if e.scale == "ratio" else f"{e.estimate:+.3g}"
    return f"{value}, 95% CI {e.low:.3g} to {e.high:.3g}, adjusted p {e.p_adjusted:.2g}"


def seeds_needed(record: dict, metric: str, noun: str) -> str:
    """What "not established" means for `metric`, from the spread between seeds seen against the reference: how wide a
    95% interval is at HALF and 2 x HALF seeds, and how many seeds each effect not established would need at its size."""
    effects = {
        arm: stats.Effect(**by_metric[metric]) for arm, by_metric in record["effects"].items() if metric in by_metric
    }
    ratio = all(e.scale == "ratio" for e in effects.values())
    size = (lambda w: f"{math.exp(w):.2g}") if ratio else (lambda w: f"{w:.2g}")

    def span(n: int) -> str:
        widths = sorted({size(stats.half_width(e.spread, n)) for e in effects.values()}, key=float)
        return ("x/÷ " if ratio else "± ") + "-".join(dict.fromkeys([widths[0], widths[-1]]))

    sentence = (
        f"Seeds for {noun}: a 95% interval spans {span(HALF)} at {HALF} seeds and {span(2 * HALF)} at {2 * HALF} (t intervals at the "
        f"spread of the arms' per-seed {'log ratios' if ratio else 'differences'} against {record['baseline']})"
    )
    tests = record["correction"]["tests"]["effects"]
    needs = [(arm, e, stats.seeds_to_exclude_null(e, tests)) for arm, e in effects.items() if not e.established]
    if needs:
        sentence += (
            "; at their sizes, "
            + ", ".join(
                f"{arm}'s effect ({e.estimate:.3g}) would need " + (f"about {n} seeds" if n else "over 1000 seeds")
                for arm, e, n in needs
            )
            + f" to exclude {needs[0][1].null:g} at 1 - {stats.ALPHA}/{tests}, the family's strictest level"
        )
    return sentence + "."


def median_cell(values: list[float]) -> str:
    """A table cell: the median of the values with their range (one value alone)."""
    if not values:
        return "-"
    ordered = sorted(values)
    median = (
        ordered[len(ordered) // 2]
        if len(ordered) % 2
        else (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2
    )
    return f"{median:.3g}" if len(values) == 1 else f"{median:.3g} ({ordered[0]:.3g}-{ordered[-1]:.3g})"
