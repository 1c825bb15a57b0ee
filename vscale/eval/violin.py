"""The gradient-norm violin (the paper's Figure 1) and the per-model figures of `eval.py run` and
`eval.py profile`; conventions of `vscale.diagnostics.figures`."""

from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from vscale.diagnostics.figures import layer_profile, legend_below, new_figure, save


def token0_over_median(norms) -> list[float]:
    """Per layer: token 0's gradient norm (mean over rows) divided by the median norm of the
    tokens t >= 1 (all rows, exact zeros left out), the factor the violin figure prints."""
    norms = np.asarray(norms, dtype=np.float64)
    factors = []
    for layer in norms:
        rest = layer[:, 1:]
        factors.append(float(layer[:, 0].mean() / np.median(rest[rest > 0])))
    return factors


def gradient_violin_figure(runs: dict, title: str = ""):
    """log10 ||dL/dh~_t|| over tokens t >= 1 per layer as violins (median marked), token 0 (the
    mean of its norm over rows) as a diamond labelled with its factor over that median (the
    paper's Figure 1). `runs` maps a label to a (layers, rows, tokens) array of norms. Exact
    zeros (a row's last token, which has no target) are left out of the log scale. One panel
    per run, on a shared y axis."""
    layers = max((len(n) for n in runs.values()), default=0)
    fig, axes = new_figure(len(runs), max(9.0, 0.5 * layers), 3.0, ncols=1)  # room for each layer's "×k"
    for ax in axes[1:]:
        ax.sharey(axes[0])
        ax.sharex(axes[0])
    shape = None
    for ax, (run, norms) in zip(axes, runs.items()):
        norms = np.asarray(norms, dtype=np.float64)
        shape = norms.shape
        rest = [np.log10(layer[:, 1:][layer[:, 1:] > 0]) for layer in norms]
        parts = ax.violinplot(rest, positions=range(len(rest)), showextrema=False, showmedians=True, widths=0.8)
        for body in parts["bodies"]:
            body.set_facecolor("C0")
            body.set_edgecolor("C0")
            body.set_alpha(0.35)
        parts["cmedians"].set_color("k")
        parts["cmedians"].set_linewidth(1.5)
        token0 = np.log10(norms[:, :, 0].mean(1))
        ax.scatter(range(len(rest)), token0, color="crimson", marker="D", s=40, zorder=3)
        many = len(rest) > 8  # then each "×k" stands upright above its marker, out of its neighbours' way
        for layer, (y, factor) in enumerate(zip(token0, token0_over_median(norms))):
            ax.annotate(
                f"×{factor:.0f}" if factor >= 10 else f"×{factor:.2g}",
                (layer, y),
                xytext=(0, 6) if many else (7, 0),
                textcoords="offset points",
                ha="center" if many else "left",
                va="bottom" if many else "center",
                rotation=90 if many else 0,
                fontsize=8,
                color="crimson",
            )
        if many:
            ax.set_ymargin(0.25)
        ax.set_title(run)
        ax.set_ylabel("log10 ||G_t||")
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(steps=[1, 2, 5, 10]))
        ax.grid(True, axis="y", alpha=0.3)
    rows = shape[1] if shape else 0
    handles = [
        Patch(facecolor="C0", edgecolor="C0", alpha=0.35),
        Line2D([], [], color="k", linewidth=1.5),
        Line2D([], [], color="crimson", marker="D", linestyle="none"),
    ]
    labels = [
        f"tokens t ≥ 1 of {rows} rows (exact zeros left out)",
        "median over tokens t ≥ 1",
        f"token 0, mean over the {rows} rows; ×k: k times that median",
    ]
    legend_below(fig, handles, labels)
    fig.suptitle(title or "G_t = dL/dh~_t at the attention input (after RMSNorm)")
    return fig


def gradient_violin(runs: dict, path: Path, title: str = "") -> Path:
    """`gradient_violin_figure` saved as a PNG at `path`."""
    return save(gradient_violin_figure(runs, title), path)


def eval_figures(profiles: dict[str, dict[str, float]], norms: dict, out_dir: Path) -> list[Path]:
    """The figures of `eval.py run` and `eval.py profile`, one line (or violin) per model:
    sink_rate.png, token0_ratio.png, gsink_ratio.png and grad_norm_violin.png in `out_dir`.
    `profiles` maps a label to averaged `diagnose` metrics, `norms` a label to (layers, rows,
    tokens) gradient norms."""
    out_dir = Path(out_dir)
    return [
        layer_profile(profiles, out_dir / "sink_rate.png", [("sink/rate", "attention sink rate")]),
        layer_profile(
            profiles,
            out_dir / "token0_ratio.png",
            [("act/h_out_ratio", "h_out, token 0 / early"), ("act/r_mlp_ratio", "r_mlp, token 0 / early")],
        ),
        layer_profile(profiles, out_dir / "gsink_ratio.png", [("gsink/ratio", "gradient-sink ratio R_GS")]),
        gradient_violin(
            norms,
            out_dir / "grad_norm_violin.png",
            "log10 ||G_t|| = log10 ||dL/dh~_t|| at the attention input, by layer",
        ),
    ]
