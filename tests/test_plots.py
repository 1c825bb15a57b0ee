"""vscale.plots: every figure labelled, readable and honest, checked on the matplotlib Figure itself."""

import numpy as np
import pytest

from vscale.diagnostics import figures as plots
from vscale.eval import violin
from vscale.eval.curves import training_curves, training_curves_figure

PROFILE_PANELS = [("sink/rate", "sink rate"), ("gsink/ratio", "R_GS"), ("act/h_out_ratio", "h_out token 0 / early")]
CURVES = ["train/loss", "gsink/ratio/median", "sink/rate/mean"]


def profile(sink, ratio, h_out):
    values = {}
    for name, ys in (("sink/rate", sink), ("gsink/ratio", ratio), ("act/h_out_ratio", h_out)):
        values |= {f"{name}/layer_{l}": float(y) for l, y in enumerate(ys)}
    return values


def two_profiles():
    return {
        "baseline": profile([0.9, 1, 1, 1], [15, 20, 12, 9], [10, 12, 11, 9]),
        "vscale": profile([0.8, 1, 0.9, 1], [6, 7, 5, 4], [3, 3, 2.5, 2]),
    }


def norms(seed, sink=10.0):
    """(layers, rows, tokens) gradient norms: lognormal tokens, token 0 `sink` times their median, last token 0."""
    g = np.random.default_rng(seed).lognormal(mean=-10, sigma=0.5, size=(3, 4, 40))
    g[:, :, 0] = sink * np.exp(-10)
    g[:, :, -1] = 0.0
    return g


def curves():
    steps = range(0, 300, 10)
    return {
        run: {
            "train/loss": [(s, [8 - s / 100 - k]) for s in steps],
            "gsink/ratio/median": [(s, [3 + k + s / 300]) for s in steps],
            "sink/rate/mean": [(s, [0.0]) for s in steps],
        }
        for k, run in enumerate(["off-seed0", "learned-seed0"])
    }


def figures():
    return {
        "layer_profile": plots.layer_profile_figure(two_profiles(), PROFILE_PANELS),
        "gradient_violin": violin.gradient_violin_figure({"baseline": norms(0), "vscale": norms(1, sink=3.0)}),
        "training_curves": training_curves_figure(curves(), CURVES),
    }


def tick_labels(fig, ax):
    fig.canvas.draw()
    return [t.get_text() for t in ax.get_yticklabels() if t.get_text()]


def legend_texts(fig):
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


@pytest.mark.parametrize("kind", ["layer_profile", "gradient_violin", "training_curves"])
def test_every_panel_has_a_y_label(kind):
    fig = figures()[kind]
    assert fig.axes and all(ax.get_ylabel().strip() for ax in fig.axes)


def test_value_scale_is_linear_within_a_factor_of_log_span_and_log_beyond():
    assert plots.value_scale([2, 3, 4, 5]) == "linear"
    assert plots.value_scale([1, plots.LOG_SPAN * 0.9]) == "linear"
    assert plots.value_scale([1, plots.LOG_SPAN]) == "log"
    assert plots.value_scale([0, 1000]) == "linear"  # zero cannot sit on a log axis


def test_a_narrow_range_gets_plain_number_tick_labels():
    fig = plots.layer_profile_figure({"a": profile([0] * 4, [2, 3, 4, 5], [1.5, 2, 2.5, 3])}, [("gsink/ratio", "R_GS")])
    labels = tick_labels(fig, fig.axes[0])
    assert len(labels) >= 3
    assert all(float(t.replace("\u2212", "-")) >= 0 for t in labels)  # plain numbers, no 10^k or 2x10^0


def test_a_wide_range_gets_a_log_axis_with_plain_number_tick_labels():
    fig = plots.layer_profile_figure({"a": profile([0] * 4, [1, 10, 100, 1000], [1] * 4)}, [("gsink/ratio", "R_GS")])
    ax = fig.axes[0]
    labels = tick_labels(fig, ax)
    assert ax.get_yscale() == "log"
    assert {"1", "10", "100", "1000"} <= set(labels) and all(float(t) > 0 for t in labels)


@pytest.mark.parametrize("kind", ["layer_profile", "gradient_violin", "training_curves"])
def test_a_figure_has_one_legend_and_it_covers_no_panel(kind):
    fig = figures()[kind]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert len(fig.legends) == 1
    box = fig.legends[0].get_window_extent(renderer)
    assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes)
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width  # not cut off at the figure's edges


def test_a_two_run_profile_and_curves_name_both_runs_in_the_legend():
    assert {"baseline", "vscale"} <= set(legend_texts(figures()["layer_profile"]))
    assert {"off-seed0", "learned-seed0"} <= set(legend_texts(figures()["training_curves"]))


def test_a_single_run_profile_names_the_run():
    fig = plots.layer_profile_figure({"baseline-seed0": profile([1] * 4, [2] * 4, [3] * 4)}, title="step 100")
    assert "baseline-seed0" in legend_texts(fig)


def test_the_violin_names_each_run_and_explains_the_marker_and_the_violins():
    fig = figures()["gradient_violin"]
    assert [ax.get_title() for ax in fig.axes] == ["baseline", "vscale"]
    texts = " ".join(legend_texts(fig))
    assert "token 0" in texts and "tokens t ≥ 1" in texts and "median" in texts


def test_the_violin_marks_token_zero_at_the_log_of_its_mean_over_rows():
    g = norms(0, sink=10.0)
    fig = violin.gradient_violin_figure({"baseline": g})
    marker = fig.axes[0].collections[-1]
    np.testing.assert_allclose(marker.get_offsets()[:, 1], np.log10(g[:, :, 0].mean(1)))


def test_token0_over_median_divides_token_zero_by_the_median_of_the_other_nonzero_tokens():
    g = norms(0, sink=10.0)
    expected = [g[l, :, 0].mean() / np.median(g[l, :, 1:-1]) for l in range(3)]
    np.testing.assert_allclose(violin.token0_over_median(g), expected)
    assert all(5 < f < 20 for f in expected)


def test_identical_series_of_two_runs_stay_apart_and_look_different():
    same = profile([0, 0, 0, 0], [2, 2, 2, 2], [1, 1, 1, 1])
    fig = plots.layer_profile_figure({"a": same, "b": dict(same)}, [("sink/rate", "sink rate")])
    a, b = fig.axes[0].get_lines()[:2]
    assert np.all(a.get_xdata() != b.get_xdata())  # dodged sideways
    assert np.all(np.abs(np.asarray(a.get_xdata()) - np.arange(4)) < 0.2)  # still over its layer
    assert a.get_marker() != b.get_marker() and a.get_linestyle() != b.get_linestyle()


def test_training_curves_mark_their_points_and_differ_by_run():
    fig = figures()["training_curves"]
    for ax in fig.axes:
        lines = [l for l in ax.get_lines() if l.get_label() in ("off-seed0", "learned-seed0")]
        assert len(lines) == 2 and all(l.get_marker() not in (None, "", "None") for l in lines)
        assert lines[0].get_marker() != lines[1].get_marker()


def test_eval_figures_and_training_curves_write_pngs(tmp_path):
    paths = violin.eval_figures(two_profiles(), {"baseline": norms(0), "vscale": norms(1)}, tmp_path)
    paths.append(training_curves(curves(), CURVES, tmp_path / "curves.png"))
    paths.append(
        plots.layer_profile(
            {"run": two_profiles()["baseline"]}, tmp_path / "diagnostics" / "profile.png", title="step 10"
        )
    )
    assert [p.name for p in paths] == [
        "sink_rate.png",
        "token0_ratio.png",
        "gsink_ratio.png",
        "grad_norm_violin.png",
        "curves.png",
        "profile.png",
    ]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000 for p in paths)


def test_a_curves_band_is_geometric_on_a_log_axis_and_arithmetic_on_a_linear_one():
    steps = range(0, 100, 10)
    arms = {
        "off": {"gsink/ratio/max": [(s, [10.0, 1000.0]) for s in steps], "train/loss": [(s, [2.0, 4.0]) for s in steps]}
    }
    fig = training_curves_figure(arms, ["gsink/ratio/max", "train/loss"])
    log_ax, lin_ax = fig.axes[:2]
    assert log_ax.get_yscale() == "log" and lin_ax.get_yscale() == "linear"
    gsd = np.exp(np.std(np.log([10.0, 1000.0]), ddof=1))
    assert np.allclose(log_ax.lines[0].get_ydata(), 100.0)
    assert np.allclose(
        sorted({round(y, 6) for y in log_ax.collections[0].get_paths()[0].vertices[:, 1]}), [100 / gsd, 100 * gsd]
    )
    assert np.allclose(lin_ax.lines[0].get_ydata(), 3.0)
    assert np.allclose(
        sorted({round(y, 6) for y in lin_ax.collections[0].get_paths()[0].vertices[:, 1]}),
        [3 - np.sqrt(2), 3 + np.sqrt(2)],
    )
