"""Figures of diagnostics, and the conventions every figure of the project follows: the
per-layer profile here (drawn by the training callback and by `eval.py`), one line per run so runs
compare at a glance. matplotlib only, drawn on `Figure` objects (no pyplot state), saved through Agg.

Every panel has a y label; every figure has one legend outside the panels, naming each run
(a single run included). Runs differ in colour, marker and line style, and per-layer lines are
dodged sideways a little, so equal series stay visible. The value axis follows one rule,
`value_scale`: logarithmic only when the values span a factor of `LOG_SPAN` or more, and tick
labels are plain numbers (2, 5, 10, 0.001) on either scale. Each `*_figure` builder returns
the Figure; the function of the same name without `_figure` saves it as a PNG.
"""

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, ScalarFormatter

TRAINING_PROFILE = (
    ("sink/rate", "sink rate"),
    ("act/h_out_ratio", "h_out token-0 / early"),
    ("gsink/ratio", "gradient-sink ratio R_GS"),
)

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


def finite_values(values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def value_scale(values) -> str:
    """'log' when every finite value is positive and the largest is at least `LOG_SPAN` times
    the smallest; otherwise 'linear'. A narrow range on a log axis gets one or no labelled
    decade, so it is drawn linearly."""
    finite = finite_values(values)
    if len(finite) < 2 or min(finite) <= 0:
        return "linear"
    return "log" if max(finite) / min(finite) >= LOG_SPAN else "linear"


def _plain(value: float, _position=None) -> str:
    return f"{value:g}"


def set_value_axis(ax, values, label: str, name: str = "") -> str:
    """Scale (by `value_scale`), plain-number tick labels and the y label of a value axis;
    a fraction (sink rate) gets a fixed 0..1 axis. Returns the scale chosen."""
    ax.set_ylabel(label)
    if name.startswith(FRACTION_PREFIXES):
        ax.set_ylim(-0.05, 1.05)
        return "linear"
    scale = value_scale(values)
    ax.set_yscale(scale)
    if scale == "log":
        finite = finite_values(values)
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
    return dict(
        color=f"C{i % 10}",
        marker=MARKERS[i % len(MARKERS)],
        linestyle=LINESTYLES[i % len(LINESTYLES)],
        markerfacecolor="none",
        markeredgewidth=1.5,
        markersize=7,
        linewidth=1.5,
    )


def dodge(i: int, n: int) -> float:
    """Sideways offset of the i-th of n runs on a per-layer axis (layers are 1 apart)."""
    return 0.0 if n < 2 else (i - (n - 1) / 2) * min(0.08, 0.3 / n)


def new_figure(n_panels: int, width: float, height: float, ncols: int | None = None):

    ncols = ncols or n_panels
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        fig.delaxes(ax)
    return fig, list(axes[:n_panels])


def legend_below(fig, handles, labels, title: str | None = None):
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


def layer_profile_figure(
    runs: dict[str, dict[str, float]],
    panels=TRAINING_PROFILE,
    title: str = "",
    errors: dict[str, dict[str, float]] | None = None,
):
    """One panel per (metric name, title), the metric by layer, one line per run (dodged
    sideways so equal lines stay visible), one legend naming every run. `errors` (same keys as
    `runs`) adds error bars, e.g. the std over seeds when a line is their mean."""
    fig, axes = new_figure(len(panels), 4.4, 3.8)
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
                ax.errorbar(
                    xs,
                    ys,
                    yerr=per_layer(errors[run], name),
                    fmt="none",
                    ecolor=style(i)["color"],
                    capsize=3,
                    linewidth=1,
                )
        reference |= finish_panel(ax, name, drawn, label, "layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    labels = list(handles)
    if reference:
        handles["_ref"] = Line2D([], [], color="0.5", linestyle=":", linewidth=1)
        labels.append("ratio 1: token 0 like the others")
    legend_below(fig, list(handles.values()), labels, "run" if len(runs) > 1 else None)
    if title:
        fig.suptitle(title)
    return fig


def layer_profile(
    runs: dict[str, dict[str, float]],
    path: Path,
    panels=TRAINING_PROFILE,
    title: str = "",
    errors: dict[str, dict[str, float]] | None = None,
) -> Path:
    """`layer_profile_figure` saved as a PNG at `path`."""
    return save(layer_profile_figure(runs, panels, title, errors), path)
