"""Figures of per-layer diagnostics; matplotlib only (Agg, no display)."""

from pathlib import Path

PANELS = (("sink/rate", "sink rate"), ("act/h_out_ratio", "h_out token-0 / early"), ("gsink/ratio", "gradient-sink ratio R_GS"))


def per_layer(values: dict[str, float], name: str) -> list[float]:
    layers = sorted(int(k.rsplit("_", 1)[1]) for k in values if k.startswith(f"{name}/layer_"))
    return [values[f"{name}/layer_{l}"] for l in layers]


def layer_profile(runs: dict[str, dict[str, float]], path: Path, title: str = "") -> Path:
    """Sink rate, token-0 h_out ratio and R_GS by layer, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.4))
    for ax, (name, label) in zip(axes, PANELS):
        for run, values in runs.items():
            ys = per_layer(values, name)
            ax.plot(range(len(ys)), ys, marker="o", label=run)
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(label)
        if name != "sink/rate":
            ax.set_yscale("log")
    axes[0].set_ylim(-0.05, 1.05)
    axes[-1].legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
