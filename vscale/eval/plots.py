"""Figures of `eval.py run` beyond the per-layer profiles, and of the probes (`eval.py truncate`,
`eval.py interpolate`): per-head heatmaps, needle accuracy by precision, truncation curves and
interpolation paths. They follow `vscale.diagnostics.figures`' conventions (labelled axes, one legend outside the
panels, `value_scale` for value axes); each `*_figure` builder returns the Figure and the function
of the same name without `_figure` saves it as a PNG.
"""

import math
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from vscale.diagnostics.figures import legend_below, new_figure, save, set_value_axis, style
from vscale.diagnostics.metrics import EPS, T_EPS

ANNOTATE_CELLS = 256
"""Heatmaps with at most this many cells per panel print each cell's value."""


def head_heatmap_figure(
    runs: dict[str, list[list[float]]],
    label: str,
    title: str,
    vmin: float | None = None,
    vmax: float | None = None,
    threshold: float | None = None,
):
    """One panel per run: a (layers x heads) grid of a per-head value, on one colour scale shared
    by every panel (`vmin`..`vmax`, default the values' range), each cell printed when the grid is
    small. With `threshold`, cells above it are outlined (the sink threshold eps for alpha)."""
    grids = {run: np.asarray(values, dtype=float) for run, values in runs.items()}
    finite = np.concatenate([g[np.isfinite(g)] for g in grids.values()])
    vmin = float(finite.min()) if vmin is None else vmin
    vmax = float(finite.max()) if vmax is None else vmax
    layers, heads = max(g.shape[0] for g in grids.values()), max(g.shape[1] for g in grids.values())
    fig, axes = new_figure(len(grids), max(3.2, 0.45 * heads + 1.6), max(2.6, 0.35 * layers + 1.2))
    image = None
    for ax, (run, grid) in zip(axes, grids.items()):
        image = ax.imshow(
            grid, cmap="viridis", vmin=vmin, vmax=vmax, origin="lower", aspect="auto", interpolation="nearest"
        )
        if grid.size <= ANNOTATE_CELLS:
            middle = (vmin + vmax) / 2
            for (l, h), value in np.ndenumerate(grid):
                ax.text(
                    h, l, f"{value:.2g}", ha="center", va="center", fontsize=7, color="k" if value > middle else "w"
                )
        if threshold is not None:
            for l, h in zip(*np.nonzero(grid > threshold)):
                ax.add_patch(Rectangle((h - 0.5, l - 0.5), 1, 1, fill=False, edgecolor="crimson", linewidth=1.5))
        ax.set_title(run)
        ax.set_xlabel("query head")
        ax.set_ylabel("layer")
        ax.set_xticks(range(grid.shape[1]))
        ax.set_yticks(range(grid.shape[0]))
    fig.colorbar(image, ax=axes, label=label, shrink=0.9)
    if threshold is not None:
        legend_below(
            fig, [Rectangle((0, 0), 1, 1, fill=False, edgecolor="crimson", linewidth=1.5)], [f"above {threshold:g}"]
        )
    fig.suptitle(title)
    return fig


def head_heatmap(
    runs: dict[str, list[list[float]]],
    path: Path,
    label: str,
    title: str,
    vmin: float | None = None,
    vmax: float | None = None,
    threshold: float | None = None,
) -> Path:
    """`head_heatmap_figure` saved as a PNG at `path`."""
    return save(head_heatmap_figure(runs, label, title, vmin, vmax, threshold), path)


def alpha_heatmap(heads: dict[str, list[list[float]]], out_dir: Path) -> Path:
    """alpha_heads.png: alpha_h (method §3) by layer and query head, sink heads (alpha_h > eps) outlined."""
    return head_heatmap(
        heads,
        out_dir / "alpha_heads.png",
        f"alpha_h (mean a_t0, t < {T_EPS})",
        f"Attention sink per head: alpha_h, the mean attention of queries 0..{T_EPS - 1} to token 0",
        0.0,
        1.0,
        EPS,
    )


def needle_accuracy_figure(runs: dict[str, dict], precisions: list[str], kinds: list[str], lengths: list[int]):
    """Needle accuracy by precision: one panel per (kind, context length), a group of bars per
    precision (full, then each W8A8 mode), one bar per run (mean over seeds, std as error bar).
    `runs` maps a label to its results' `needle` entry ({precision: {kind: {length: {mean, std}}}});
    a missing measurement leaves its bar out."""
    fig, axes = new_figure(
        len(kinds) * len(lengths), max(4.5, 0.55 * len(precisions) * max(2, len(runs)) + 1.5), 3.2, ncols=len(lengths)
    )
    width = 0.8 / max(1, len(runs))
    for ax, (kind, length) in zip(axes, [(k, n) for k in kinds for n in lengths]):
        for i, (run, needle) in enumerate(runs.items()):
            for x, precision in enumerate(precisions):
                cell = (needle.get(precision) or {}).get(kind) or {}
                cell = cell.get(length, cell.get(str(length)))
                at = x + (i - (len(runs) - 1) / 2) * width
                if cell:
                    bars = ax.bar(
                        at,
                        cell["mean"],
                        width,
                        yerr=cell["std"],
                        capsize=3,
                        color=style(i)["color"],
                        edgecolor="k",
                        linewidth=0.5,
                    )
                    ax.bar_label(bars, fmt="%.2g", fontsize=7, padding=2)
                else:  # not measured (failed or skipped): unlike a bar at 0
                    ax.text(at, 0.02, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
        ax.set_xticks(range(len(precisions)), [p.replace("_down_proj", "\ndown_proj") for p in precisions], fontsize=8)
        ax.set_xlim(-0.5, len(precisions) - 0.5)
        set_value_axis(ax, [], "accuracy (mean over seeds)", "sink/rate")  # a fraction: fixed 0..1 axis
        ax.set_title(f"{kind}, {length} tokens")
        ax.grid(True, axis="y", alpha=0.3)
    legend_below(
        fig,
        [Patch(facecolor=style(i)["color"], edgecolor="k") for i in range(len(runs))],
        list(runs),
        "run; error bars: std over seeds",
    )
    fig.suptitle("Needle retrieval in full precision and under W8A8 (docs/method.md §5)")
    return fig


def needle_accuracy(
    runs: dict[str, dict], precisions: list[str], kinds: list[str], lengths: list[int], path: Path
) -> Path:
    """`needle_accuracy_figure` saved as a PNG at `path`."""
    return save(needle_accuracy_figure(runs, precisions, kinds, lengths), path)


def truncation_figure(
    runs: dict[str, dict[int, list[float]]], keep_sink: dict[str, dict[int, list[float]]] | None = None
):
    """One panel per run: 1 - cos between each layer's output with the full context and with attention
    to the last k tokens only (solid), or to them and token 0 (dashed, `keep_sink`), against the layer,
    one colour per window k."""
    windows = sorted(
        {k for curves in runs.values() for k in curves}, key=int
    )  # int keys, or their strings read back from JSON
    fig, axes = new_figure(len(runs), 4.8, 3.8)
    for ax in axes[1:]:
        ax.sharey(axes[0])  # before drawing, so that the shared limits cover every panel's lines
    drawn = [
        v for variant in (runs, keep_sink or {}) for curves in variant.values() for ys in curves.values() for v in ys
    ]
    for ax, (run, curves) in zip(axes, runs.items()):
        for i, k in enumerate(windows):
            if k in curves:
                ax.plot(range(len(curves[k])), curves[k], **style(i) | {"linestyle": "-"})
            if keep_sink and k in keep_sink.get(run, {}):
                ax.plot(
                    range(len(keep_sink[run][k])),
                    keep_sink[run][k],
                    **style(i) | {"linestyle": "--", "markerfacecolor": style(i)["color"]},
                )
        set_value_axis(ax, drawn, "1 - cos(h_out full, h_out window)")
        ax.set_title(textwrap.fill(run, 36), fontsize=9)
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, axis="y", alpha=0.3)
    handles = [Line2D([], [], **style(i) | {"linestyle": "-"}) for i in range(len(windows))]
    labels = [f"k = {k}" for k in windows]
    if keep_sink:
        handles += [Line2D([], [], color="0.3", linestyle="-"), Line2D([], [], color="0.3", linestyle="--")]
        labels += ["last k tokens", "last k tokens and token 0"]
    legend_below(fig, handles, labels, "window")
    fig.suptitle(textwrap.fill("Residual stream with attention limited to a window", 60))
    return fig


def truncation(
    runs: dict[str, dict[int, list[float]]], path: Path, keep_sink: dict[str, dict[int, list[float]]] | None = None
) -> Path:
    """`truncation_figure` saved as a PNG at `path`."""
    return save(truncation_figure(runs, keep_sink), path)


def interpolation_figure(runs: dict[str, dict]):
    """One row per run, along the path alpha = 0..1: the progress of each head's attention output,
    the MLP output and the layer output (0 at the first vector, 1 at the second; a linear map
    gives the diagonal, a plateau is flat, a cliff a jump), their norms, and each head's
    attention to token 0. `runs` maps a label to an `interpolate` result."""
    fig, axes = new_figure(3 * len(runs), 4.4, 3.4, ncols=3)
    heads = max(len(r["heads"]) for r in runs.values())
    for row, (run, result) in enumerate(runs.items()):
        alphas = result["alphas"]
        progress_ax, norm_ax, sink_ax = axes[3 * row : 3 * row + 3]
        progress_ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1)
        norms = []
        for h, head in enumerate(result["heads"]):
            progress_ax.plot(
                alphas, [math.nan if v is None else v for v in head["progress"]], color=f"C{h % 10}", linewidth=1.2
            )
            norm_ax.plot(alphas, head["norm"], color=f"C{h % 10}", linewidth=1.2)
            sink_ax.plot(alphas, head["attention_to_token0"], color=f"C{h % 10}", linewidth=1.2)
            norms += head["norm"]
        for name, line in (
            ("mlp", dict(color="k", linewidth=2.2)),
            ("residual", dict(color="0.4", linewidth=1.8, linestyle="--")),
        ):
            progress_ax.plot(alphas, [math.nan if v is None else v for v in result[name]["progress"]], **line)
            norm_ax.plot(alphas, result[name]["norm"], **line)
            norms += result[name]["norm"]
        if "logits" in result:
            progress_ax.plot(
                alphas,
                [math.nan if v is None else v for v in result["logits"]["progress"]],
                color="crimson",
                linewidth=1.6,
                linestyle="-.",
            )
        where = f"{run}: layer {result['layer']}, position {result['position']}"
        for ax, label, title in (
            (progress_ax, "progress from vector A to B", where),
            (norm_ax, "output norm", "norms"),
            (sink_ax, "attention to token 0", "attention of the position to token 0"),
        ):
            ax.set_xlabel("alpha (0: A, 1: B)")
            ax.set_title(title, fontsize=9)
            ax.grid(True, axis="y", alpha=0.3)
        progress_ax.set_ylabel("progress from vector A to B")
        set_value_axis(norm_ax, norms, "output norm")
        set_value_axis(sink_ax, [], "attention to token 0", "sink/rate")  # a fraction: fixed 0..1 axis
    handles = [Line2D([], [], color=f"C{h % 10}", linewidth=1.2) for h in range(heads)]
    handles += [
        Line2D([], [], color="k", linewidth=2.2),
        Line2D([], [], color="0.4", linewidth=1.8, linestyle="--"),
        Line2D([], [], color="crimson", linewidth=1.6, linestyle="-."),
        Line2D([], [], color="0.6", linestyle=":", linewidth=1),
    ]
    legend_below(fig, handles, [f"head {h}" for h in range(heads)] + ["MLP", "layer output", "logits", "linear path"])
    fig.suptitle(
        textwrap.fill("Residual stream interpolated between two vectors: attention heads and MLP along the path", 70)
    )
    return fig


def interpolation(runs: dict[str, dict], path: Path) -> Path:
    """`interpolation_figure` saved as a PNG at `path`."""
    return save(interpolation_figure(runs), path)
