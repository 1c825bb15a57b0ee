"""The words of `eval.py compare`'s summary (summary.md, the study tables): one line per metric and arm saying which
direction holds against the reference, the tables of arms against each other and of the halves of the seeds, and what
"not established" means in seeds."""

import math
from itertools import combinations

from vscale.eval import stats

HALF = 10
"""Seeds per half: the halves are compared by default when the runs have at least 2 x HALF seeds."""


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
        f"{n_runs} runs in {len(arms)} arms. Each run is summarised by its late window: the median of the last "
        f"{record['window']:.0%} of its logged steps (per layer first, then over the layers for /mean, /median, /max, "
        "/min). A cell is the median over the arm's runs with their range; an arm of one run shows its value alone.",
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
            f"**Against {reference}, paired by seed.** Ratios (and their intervals) are geometric means of arm / "
            f"{reference} over the seeds both ran, losses mean differences. A direction is stated when the bootstrap "
            "95% interval excludes no effect and the Wilcoxon signed-rank p, adjusted over the family of the "
            f"{tests['effects']} tests against {reference} (every arm x metric; {stats.CORRECTION}, "
            f"scipy.stats.false_discovery_control), is below {stats.ALPHA}; each line gives the raw and the adjusted p"
            + (", and whether a stated direction holds in both halves of the seeds" if "halves" in record else "")
            + "."
            + (
                f" Below {stats.MIN_SEEDS_FOR_INTERVAL} paired seeds there is no interval, and so no direction: the "
                "exact test's smallest two-sided p is 2/2^n (0.0625 at 5 seeds)."
                if any(e.n < stats.MIN_SEEDS_FOR_INTERVAL for by_metric in effects.values() for e in by_metric.values())
                else ""
            ),
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
            "**Arms against each other, paired by seed** (a / b, or a - b for losses): estimate (95% CI); the raw and "
            f"the adjusted p, adjusted over their own family of {tests['pairwise']} tests (every pair x metric; "
            f"{stats.CORRECTION}); a direction where established. Only these comparisons may tell two arms apart.",
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
        f"**The two halves of the seeds**, each against {record['baseline']} as above, adjusted over its own family: "
        "estimate (95% CI); raw and adjusted p; a direction where established.",
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
        f"{e.estimate:.3g} ({e.bounds}); p {e.p:.2g}, adjusted {e.p_adjusted:.2g}"
        + (f"; **{e.verdict}**" if e.established else "")
        + _mark(held)
    )


RANK = {"lower": 0, "none": 1, "higher": 2}
WORDS = {"lower": "lower with", "higher": "higher with", "none": "no difference established with"}


def headline(record: dict, metric: str, noun: str) -> str:
    """Which arms have `metric` lower, higher, or not established against the reference, each with its estimate; two
    arms on different sides are called different only where their direct comparison establishes it, and said not to be
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
    return f"{value}, 95% CI {e.bounds}, adjusted p {e.p_adjusted:.2g}"


def seeds_needed(record: dict, metric: str, noun: str) -> str:
    """What "not established" means for `metric`, from the spread between seeds seen against the reference: how wide a
    95% interval is at HALF and 2 x HALF seeds, and how many seeds each effect not established would need at its
    size."""
    effects = {
        arm: stats.Effect(**by_metric[metric]) for arm, by_metric in record["effects"].items() if metric in by_metric
    }
    ratio = all(e.scale == "ratio" for e in effects.values())
    size = (lambda w: f"{math.exp(w):.2g}") if ratio else (lambda w: f"{w:.2g}")

    def span(n: int) -> str:
        widths = sorted({size(stats.half_width(e.spread, n)) for e in effects.values()}, key=float)
        return ("x/÷ " if ratio else "± ") + "-".join(dict.fromkeys([widths[0], widths[-1]]))

    sentence = (
        f"Seeds for {noun}: a 95% interval spans {span(HALF)} at {HALF} seeds and {span(2 * HALF)} at {2 * HALF} (t "
        f"intervals at the spread of the arms' per-seed {'log ratios' if ratio else 'differences'} against "
        f"{record['baseline']})"
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
