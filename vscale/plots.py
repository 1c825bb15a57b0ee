"""Figures of diagnostics: per-layer profiles, gradient-norm violins and training curves, one
line (or violin) per run so runs compare at a glance. matplotlib only, Agg backend."""

from pathlib import Path

TRAINING_PROFILE = (("sink/rate", "sink rate"), ("act/h_out_ratio", "h_out token-0 / early"), ("gsink/ratio", "gradient-sink ratio R_GS"))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, title: str) -> Path:
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def per_layer(values: dict[str, float], name: str) -> list[float]:
    layers = sorted(int(k.rsplit("_", 1)[1]) for k in values if k.startswith(f"{name}/layer_"))
    return [values[f"{name}/layer_{l}"] for l in layers]


def layer_profile(runs: dict[str, dict[str, float]], path: Path, panels=TRAINING_PROFILE, title: str = "") -> Path:
    """One panel per (metric name, label), the metric by layer, one line per run."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (name, label) in zip(axes[0], panels):
        for run, values in runs.items():
            ys = per_layer(values, name)
            ax.plot(range(len(ys)), ys, marker="o", label=run)
        ax.set_xlabel("layer")
        ax.set_title(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if name == "sink/rate":
            ax.set_ylim(-0.05, 1.05)
        else:
            ax.set_yscale("log")
    axes[0][-1].legend()
    return _save(fig, path, title)


def gradient_violin(runs: dict, path: Path, title: str = "") -> Path:
    """log10 ||dL/dh~_t|| over tokens t >= 1 per layer as violins, token 0 as a marker (the
    paper's Figure 1). `runs` maps a label to a (layers, batch, tokens) tensor of norms. Exact
    zeros (a row's last token, which has no target) are left out of the log scale."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    fig, axes = plt.subplots(len(runs), 1, figsize=(9, 2.8 * len(runs)), squeeze=False)
    for ax, (run, norms) in zip(axes[:, 0], runs.items()):
        rest = [layer[:, 1:][layer[:, 1:] > 0].log10().tolist() for layer in norms]
        ax.violinplot(rest, positions=range(len(rest)), showextrema=False)
        ax.scatter(range(len(rest)), norms[:, :, 0].mean(1).log10().tolist(), color="crimson", marker="D", zorder=3, label="token 0")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(run)
        ax.set_ylabel("log10 ||G_t||")
        ax.legend(loc="upper right")
    axes[-1, 0].set_xlabel("layer")
    return _save(fig, path, title)


def eval_figures(profiles: dict[str, dict[str, float]], norms: dict, out_dir: Path) -> list[Path]:
    """The figures of `eval.py run` and `eval.py profile`, one line (or violin) per model:
    sink_rate.png, token0_ratio.png, gsink_ratio.png and grad_norm_violin.png in `out_dir`.
    `profiles` maps a label to averaged `diagnose` metrics, `norms` a label to (layers, rows,
    tokens) gradient norms."""
    return [
        layer_profile(profiles, out_dir / "sink_rate.png", [("sink/rate", "sink rate")]),
        layer_profile(profiles, out_dir / "token0_ratio.png", [("act/h_out_ratio", "h_out token-0 / early"), ("act/r_mlp_ratio", "r_mlp token-0 / early")]),
        layer_profile(profiles, out_dir / "gsink_ratio.png", [("gsink/ratio", "gradient-sink ratio R_GS")]),
        gradient_violin(norms, out_dir / "grad_norm_violin.png", "log10 ||dL/dh~_t|| by layer; token 0 marked"),
    ]


def training_curves(runs: dict[str, dict[str, list[tuple[int, float]]]], names: list[str], path: Path, title: str = "") -> Path:
    """One panel per metric name, its value against the step, one line per run."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        for run, series in runs.items():
            if series.get(name):
                steps, values = zip(*series[name])
                ax.plot(steps, values, label=run)
        ax.set_title(name)
        ax.set_xlabel("step")
    axes[0][-1].legend()
    return _save(fig, path, title)
