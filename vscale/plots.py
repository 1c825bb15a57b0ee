"""Figures of diagnostics: per-layer profiles, gradient-norm violins and training curves, one
line (or violin) per run so runs compare at a glance. matplotlib only, drawn on `Figure`
objects (no pyplot state), saved through Agg.

Every panel has a y label; every figure has one legend outside the panels, naming each run
(a single run included). Runs differ in colour, marker and line style, and per-layer lines are
dodged sideways a little, so equal series stay visible. The value axis follows one rule,
`value_scale`: logarithmic only when the values span a factor of `LOG_SPAN` or more, and tick
labels are plain numbers (2, 5, 10, 0.001) on either scale. Each `*_figure` builder returns
the Figure; the function of the same name without `_figure` saves it as a PNG.
"""

import math
from pathlib import Path

TRAINING_PROFILE = (("sink/rate", "sink rate"), ("act/h_out_ratio", "h_out token-0 / early"), ("gsink/ratio", "gradient-sink ratio R_GS"))

LOG_SPAN = 30.0
"""A value axis is logarithmic when its largest value is at least this many times its smallest."""

# y labels of the metrics drawn (docs/method.md §3); per-layer names, or per-layer names with an
# aggregate over layers (".../median") in training curves.
Y_LABELS = {
    "sink/rate": "fraction of heads with a sink",
    "sink/alpha": "mean attention to token 0",
    "act/v_ratio": "||v|| token 0 / tokens 1-15",
    "gsink/ratio": "R_GS: ||G|| token 0 / tokens 1-31",
    "act/h_out_ratio": "||h_out|| token 0 / tokens 1-15",
    "act/r_mlp_ratio": "||r_mlp|| token 0 / tokens 1-15",
    "act/h_out_t0": "||h_out|| at token 0",
    "act/r_mlp_t0": "||r_mlp|| at token 0",
    "train/loss": "train loss (nats / token)",
    "val/loss": "val loss (nats / token)",
    "val/ppl": "val perplexity",
}
RATIO_REFERENCE = 1.0
"""Drawn as a dotted line on ratio panels: token 0 like the other tokens, no sink."""
FRACTION_PREFIXES = ("sink/rate",)
"""Metrics that are fractions: a fixed 0..1 axis."""

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")


def y_label(name: str) -> str:
    """The y label of a metric: its description, with the aggregate over layers if it is one."""
    if name in Y_LABELS:
        return Y_LABELS[name]
    base, _, aggregate = name.rpartition("/")
    if base in Y_LABELS and aggregate in ("mean", "median", "max", "min", "iqr"):
        return f"{Y_LABELS[base]}\n({aggregate} over layers)"
    return name


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def value_scale(values) -> str:
    """'log' when every finite value is positive and the largest is at least `LOG_SPAN` times
    the smallest; otherwise 'linear'. A narrow range on a log axis gets one or no labelled
    decade, so it is drawn linearly."""
    finite = _finite(values)
    if len(finite) < 2 or min(finite) <= 0:
        return "linear"
    return "log" if max(finite) / min(finite) >= LOG_SPAN else "linear"


def _plain(value: float, _position=None) -> str:
    return f"{value:g}"


def set_value_axis(ax, values, label: str, name: str = "") -> str:
    """Scale (by `value_scale`), plain-number tick labels and the y label of a value axis;
    a fraction (sink rate) gets a fixed 0..1 axis. Returns the scale chosen."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, ScalarFormatter

    ax.set_ylabel(label)
    if name.startswith(FRACTION_PREFIXES):
        ax.set_ylim(-0.05, 1.05)
        return "linear"
    scale = value_scale(values)
    ax.set_yscale(scale)
    if scale == "log":
        finite = _finite(values)
        decades = math.log10(max(finite) / min(finite))
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,), numticks=12))
        ax.yaxis.set_major_formatter(FuncFormatter(_plain))
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        formatter = ScalarFormatter(useOffset=False)
        formatter.set_powerlimits((-3, 4))
        ax.yaxis.set_major_formatter(formatter)
    return scale


def style(i: int) -> dict:
    """Line style of the i-th run: colour, hollow marker and dash pattern all differ."""
    return dict(color=f"C{i % 10}", marker=MARKERS[i % len(MARKERS)], linestyle=LINESTYLES[i % len(LINESTYLES)],
                markerfacecolor="none", markeredgewidth=1.5, markersize=7, linewidth=1.5)


def dodge(i: int, n: int) -> float:
    """Sideways offset of the i-th of n runs on a per-layer axis (layers are 1 apart)."""
    return 0.0 if n < 2 else (i - (n - 1) / 2) * min(0.08, 0.3 / n)


def _figure(n_panels: int, width: float, height: float, ncols: int | None = None):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = ncols or n_panels
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        fig.delaxes(ax)
    return fig, list(axes[:n_panels])


def _legend(fig, handles, labels, title: str | None = None):
    """One legend for the whole figure, below the panels, so it covers no data; as many
    entries to a row as fit the figure's width."""
    renderer = fig.canvas.get_renderer()
    for ncols in range(len(labels), 0, -1):
        legend = fig.legend(handles, labels, loc="outside lower center", ncols=ncols, title=title, frameon=False)
        if ncols == 1 or legend.get_window_extent(renderer).width <= 0.98 * fig.bbox.width:
            return legend
        legend.remove()


def save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def finish_panel(ax, name: str, drawn: list[float], title: str, x_label: str) -> bool:
    """Value axis, titles and grid of a panel of metric `name` whose lines drew `drawn`; a
    ratio panel gets the dotted reference line at 1. Returns whether it did."""
    ratio = "ratio" in name
    if ratio:
        ax.axhline(RATIO_REFERENCE, color="0.5", linestyle=":", linewidth=1, zorder=0)
    set_value_axis(ax, [*drawn, *([RATIO_REFERENCE] if ratio else [])], y_label(name), name)
    ax.set_title(title)
    ax.set_xlabel(x_label)
    ax.grid(True, axis="y", alpha=0.3)
    return ratio


def per_layer(values: dict[str, float], name: str) -> list[float]:
    layers = sorted(int(k.rsplit("_", 1)[1]) for k in values if k.startswith(f"{name}/layer_"))
    return [values[f"{name}/layer_{l}"] for l in layers]


def layer_profile_figure(runs: dict[str, dict[str, float]], panels=TRAINING_PROFILE, title: str = "",
                         errors: dict[str, dict[str, float]] | None = None):
    """One panel per (metric name, title), the metric by layer, one line per run (dodged
    sideways so equal lines stay visible), one legend naming every run. `errors` (same keys as
    `runs`) adds error bars, e.g. the std over seeds when a line is their mean."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig, axes = _figure(len(panels), 4.4, 3.8)
    handles = {}
    reference = False
    for ax, (name, label) in zip(axes, panels):
        drawn = []
        for i, (run, values) in enumerate(runs.items()):
            ys = per_layer(values, name)
            xs = [l + dodge(i, len(runs)) for l in range(len(ys))]
            handles[run] = ax.plot(xs, ys, label=run, **style(i))[0]
            drawn += ys
            if errors and errors.get(run):
                ax.errorbar(xs, ys, yerr=per_layer(errors[run], name), fmt="none", ecolor=style(i)["color"], capsize=3, linewidth=1)
        reference |= finish_panel(ax, name, drawn, label, "layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    labels = list(handles)
    if reference:
        handles["_ref"] = Line2D([], [], color="0.5", linestyle=":", linewidth=1)
        labels.append("ratio 1: token 0 like the others")
    _legend(fig, list(handles.values()), labels, "run" if len(runs) > 1 else None)
    if title:
        fig.suptitle(title)
    return fig


def layer_profile(runs: dict[str, dict[str, float]], path: Path, panels=TRAINING_PROFILE, title: str = "",
                  errors: dict[str, dict[str, float]] | None = None) -> Path:
    """`layer_profile_figure` saved as a PNG at `path`."""
    return save(layer_profile_figure(runs, panels, title, errors), path)


def token0_over_median(norms) -> list[float]:
    """Per layer: token 0's gradient norm (mean over rows) divided by the median norm of the
    tokens t >= 1 (all rows, exact zeros left out), the factor the violin figure prints."""
    import numpy as np

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
    import numpy as np
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    layers = max((len(n) for n in runs.values()), default=0)
    fig, axes = _figure(len(runs), max(9.0, 0.5 * layers), 3.0, ncols=1)  # room for each layer's "×k"
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
            ax.annotate(f"×{factor:.0f}" if factor >= 10 else f"×{factor:.2g}", (layer, y), xytext=(0, 6) if many else (7, 0),
                        textcoords="offset points", ha="center" if many else "left", va="bottom" if many else "center",
                        rotation=90 if many else 0, fontsize=8, color="crimson")
        if many:
            ax.set_ymargin(0.25)
        ax.set_title(run)
        ax.set_ylabel("log10 ||G_t||")
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(steps=[1, 2, 5, 10]))
        ax.grid(True, axis="y", alpha=0.3)
    rows = shape[1] if shape else 0
    handles = [Patch(facecolor="C0", edgecolor="C0", alpha=0.35), Line2D([], [], color="k", linewidth=1.5),
               Line2D([], [], color="crimson", marker="D", linestyle="none")]
    labels = [f"tokens t ≥ 1 of {rows} rows (exact zeros left out)", "median over tokens t ≥ 1",
              f"token 0, mean over the {rows} rows; ×k: k times that median"]
    _legend(fig, handles, labels)
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
        layer_profile(profiles, out_dir / "token0_ratio.png", [("act/h_out_ratio", "h_out, token 0 / early"), ("act/r_mlp_ratio", "r_mlp, token 0 / early")]),
        layer_profile(profiles, out_dir / "gsink_ratio.png", [("gsink/ratio", "gradient-sink ratio R_GS")]),
        gradient_violin(norms, out_dir / "grad_norm_violin.png", "log10 ||G_t|| = log10 ||dL/dh~_t|| at the attention input, by layer"),
    ]


def training_curves_figure(runs: dict[str, dict[str, list[tuple]]], names: list[str], title: str = ""):
    """One panel per metric name (three to a row), its value against the step, one line per
    run with a marker at every logged point (at most about 25 per line). A point is (step,
    value), or (step, mean, std) for a line that is the mean over seeds: then a band of ±std
    (where std is not None) is shaded around it."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig, axes = _figure(len(names), 4.4, 3.4, ncols=min(3, len(names)))
    reference = banded = False
    for ax, name in zip(axes, names):
        lines = []
        for i, (run, series) in enumerate(runs.items()):
            if series.get(name):
                steps, values, *spread = zip(*series[name])
                ax.plot(steps, values, label=run, markevery=max(1, len(steps) // 25), **style(i))
                lines += values
                band = [(t, v - s, v + s) for t, v, s in zip(steps, values, spread[0] if spread else []) if s is not None]
                if band:
                    t, lo, hi = zip(*band)
                    ax.fill_between(t, lo, hi, color=style(i)["color"], alpha=0.2, linewidth=0)
                    lines += hi  # a band reaching below 0 does not force a linear axis
                    banded = True
        reference |= finish_panel(ax, name, lines, name, "step")
        if banded and ax.get_yscale() == "log" and _finite(lines):  # a band below the lines' range runs off the panel
            ax.set_ylim(bottom=min(v for v in _finite(lines) if v > 0) / 3)
    handles = [Line2D([], [], **style(i)) for i in range(len(runs))]
    labels = list(runs)
    if banded:
        handles.append(Patch(color="0.5", alpha=0.3, linewidth=0))
        labels.append("± std over seeds")
    if reference:
        handles.append(Line2D([], [], color="0.5", linestyle=":", linewidth=1))
        labels.append("ratio 1: token 0 like the others")
    _legend(fig, handles, labels, "run" if len(runs) > 1 else None)
    if title:
        fig.suptitle(title)
    return fig


def training_curves(runs: dict[str, dict[str, list[tuple[int, float]]]], names: list[str], path: Path, title: str = "") -> Path:
    """`training_curves_figure` saved as a PNG at `path`."""
    return save(training_curves_figure(runs, names, title), path)
