"""Figures of `eval.py compare`: each metric against the step, one line per arm with a band over its
seeds, and each arm's paired effect per seed against the reference arm; conventions of
`vscale.diagnostics.figures`."""

import math
from pathlib import Path

from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from vscale.diagnostics.figures import finish_panel, legend_below, new_figure, save, style, value_scale
from vscale.eval.stats import Effect, arithmetic_band, geometric_band


def training_curves_figure(
    runs: dict[str, dict[str, list[tuple[int, list[float]]]]], names: list[str], title: str = ""
):
    """One panel per metric name (three to a row), its value against the step, one line per arm with a
    marker at every logged point (at most about 25 per line). A point is (step, the values of the arm's
    runs there). A panel whose values span a log axis draws each arm's geometric mean with a band of
    ×/÷ the geometric std; a linear one the mean with a band of ± the std (none where one run logged)."""
    fig, axes = new_figure(len(names), 4.4, 3.4, ncols=min(3, len(names)))
    reference = banded = False
    for ax, name in zip(axes, names):
        every = [v for series in runs.values() for _, values in series.get(name, []) for v in values]
        log = value_scale(every) == "log" and not name.startswith("sink/rate")
        lines = []
        for i, (run, series) in enumerate(runs.items()):
            if not series.get(name):
                continue
            steps = [step for step, _ in series[name]]
            centre, low, high = zip(
                *((geometric_band if log else arithmetic_band)(values) for _, values in series[name])
            )
            ax.plot(steps, centre, label=run, markevery=max(1, len(steps) // 25), **style(i))
            lines += centre
            band = [(t, lo, hi) for t, lo, hi in zip(steps, low, high) if lo is not None]
            if band:
                t, lo, hi = zip(*band)
                ax.fill_between(t, lo, hi, color=style(i)["color"], alpha=0.2, linewidth=0)
                lines += (*lo, *hi) if log else hi  # a linear band reaching below 0 does not force a linear axis
                banded = True
        reference |= finish_panel(ax, name, lines, name, "step")
    handles = [Line2D([], [], **style(i)) for i in range(len(runs))]
    labels = list(runs)
    if banded:
        handles.append(Patch(color="0.5", alpha=0.3, linewidth=0))
        labels.append("band over seeds: ± std (linear axes), ×/÷ geometric std (log axes)")
    if reference:
        handles.append(Line2D([], [], color="0.5", linestyle=":", linewidth=1))
        labels.append("ratio 1: token 0 like the others")
    legend_below(fig, handles, labels, "arm")
    if title:
        fig.suptitle(title)
    return fig


def training_curves(
    runs: dict[str, dict[str, list[tuple[int, list[float]]]]], names: list[str], path: Path, title: str = ""
) -> Path:
    """`training_curves_figure` saved as a PNG at `path`."""
    return save(training_curves_figure(runs, names, title), path)


def paired_effects_figure(effects: dict[str, dict[str, Effect]], reference: str, title: str = ""):
    """One panel per metric: for each arm, its effect against `reference` in each seed (dots), the
    estimate (a bar) and its 95% interval; ratios on a log axis, differences on a linear one, the
    no-effect line dotted."""
    metrics = list(dict.fromkeys(m for by_metric in effects.values() for m in by_metric))
    fig, axes = new_figure(len(metrics), 4.4, 3.4, ncols=min(3, len(metrics)))
    arms = list(effects)
    for ax, metric in zip(axes, metrics):
        drawn, null = [], None
        for i, arm in enumerate(arms):
            effect = effects[arm].get(metric)
            if effect is None:
                continue
            null = effect.null
            seeds = list(effect.per_seed.values())
            ax.scatter([i] * len(seeds), seeds, color=style(i)["color"], alpha=0.6, s=18, zorder=3)
            has_interval = math.isfinite(effect.low) and math.isfinite(effect.high)
            ax.errorbar(
                [i + 0.18],
                [effect.estimate],
                yerr=[[effect.estimate - effect.low], [effect.high - effect.estimate]] if has_interval else None,
                fmt="D",
                color=style(i)["color"],
                markerfacecolor="none",
                capsize=4,
                zorder=4,
            )
            drawn += [*seeds, *([effect.low, effect.high] if has_interval else [effect.estimate])]
        if null is not None:
            ax.axhline(null, color="0.5", linestyle=":", linewidth=1, zorder=0)
            if null == 1.0:
                ax.set_yscale("log")
        ax.set_xticks(range(len(arms)), arms, rotation=30, ha="right")
        ax.set_title(metric)
        ax.set_ylabel(f"arm / {reference}" if null == 1.0 else f"arm - {reference}")
        ax.grid(True, axis="y", alpha=0.3)
    handles = [
        Line2D([], [], color="0.3", marker="o", linestyle="none", alpha=0.6),
        Line2D([], [], color="0.3", marker="D", markerfacecolor="none", linestyle="none"),
        Line2D([], [], color="0.5", linestyle=":", linewidth=1),
    ]
    legend_below(fig, handles, ["one seed", "estimate and 95% bootstrap interval", "no effect"], None)
    fig.suptitle(title or f"paired effect per seed against {reference}")
    return fig


def paired_effects(effects: dict[str, dict[str, Effect]], reference: str, path: Path, title: str = "") -> Path:
    """`paired_effects_figure` saved as a PNG at `path`."""
    return save(paired_effects_figure(effects, reference, title), path)


def seed_lines_figure(
    arms: dict[str, dict[str, list[tuple[int, float]]]],
    y_label: str,
    x_label: str = "step",
    threshold: float | None = None,
    threshold_label: str = "",
):
    """One panel per arm, on one value axis: each run (seed) of the arm a thin line, the arm's mean over its runs a
    thick one at every step all of them logged; `threshold` a dotted horizontal line."""
    fig, axes = new_figure(len(arms), 4.4, 3.4)
    for i, (ax, (arm, runs)) in enumerate(zip(axes, arms.items())):
        colour = style(i)["color"]
        for points in runs.values():
            ax.plot(*zip(*sorted(points)), color=colour, linewidth=0.8, alpha=0.45)
        steps = sorted(set.intersection(*({s for s, _ in points} for points in runs.values())))
        values = [dict(points) for points in runs.values()]
        ax.plot(
            steps,
            [sum(v[s] for v in values) / len(values) for s in steps],
            color=colour,
            linewidth=2.6,
            marker="o",
            markersize=3.5,
        )
        if threshold is not None:
            ax.axhline(threshold, color="0.5", linestyle=":", linewidth=1, zorder=0)
        ax.set_title(f"{arm} ({len(runs)} run{'s' if len(runs) > 1 else ''})")
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.grid(True, axis="y", alpha=0.3)
    top = max(v for runs in arms.values() for points in runs.values() for _, v in points)
    for ax in axes:
        ax.set_ylim(-0.03 * max(top, 1.0), 1.03 * max(top, 1.0))
    handles = [
        Line2D([], [], color="0.3", linewidth=0.8, alpha=0.45),
        Line2D([], [], color="0.3", linewidth=2.6, marker="o", markersize=3.5),
    ]
    labels = ["one run (seed)", "the arm's mean (markers: steps measured)"]
    if threshold is not None:
        handles.append(Line2D([], [], color="0.5", linestyle=":", linewidth=1))
        labels.append(threshold_label or f"{threshold:g}")
    legend_below(fig, handles, labels, None)
    return fig


def seed_lines(
    arms: dict[str, dict[str, list[tuple[int, float]]]],
    path: Path,
    y_label: str,
    x_label: str = "step",
    threshold: float | None = None,
    threshold_label: str = "",
) -> Path:
    """`seed_lines_figure` saved as a PNG at `path`."""
    return save(seed_lines_figure(arms, y_label, x_label, threshold, threshold_label), path)
