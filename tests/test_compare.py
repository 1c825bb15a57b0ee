"""eval.py compare: runs grouped into arms by their directory names (or labels), each run summarised by its late
window, arms compared with the baseline paired by seed; computed here by hand from the metrics.csv files written for the test."""

import csv
import json
import math
import statistics

import pytest

from vscale.eval import cli as eval_cli
from vscale.eval import runs
from vscale.eval.compare import headline
from vscale.train.loggers import read_metrics

STEPS = [9, 19, 29]


def write_run(root, name: str, values: dict[str, list[float]], steps=STEPS):
    """A run directory holding a metrics.csv in train.py's layout: a step column, one column per metric."""
    run = root / name
    run.mkdir(parents=True)
    with open(run / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "step", *values])
        writer.writeheader()
        for i, step in enumerate(steps):
            writer.writerow({"epoch": 0, "step": step, **{k: v[i] for k, v in values.items()}})
    return run


def layered(base: float, step_scale: float) -> dict[str, list[float]]:
    """A run's metrics: a summary and two layers of each profile quantity, changing with the step."""
    out = {"train/loss": [base + 3 - s / 10 for s in range(3)], "gsink/ratio/median": [base * (s + 1) for s in range(3)]}
    for q, _ in runs.PROFILE:
        for l in range(2):
            out[f"{q}/layer_{l}"] = [base + l + step_scale * s for s in range(3)]
    return out


@pytest.fixture
def experiment(tmp_path):
    root = tmp_path / "runs" / "bb"
    for seed, base in enumerate([1.0, 2.0, 4.0]):
        write_run(root, f"off-seed{seed}", layered(base, 0.5))
    for seed, base in enumerate([10.0, 14.0]):
        write_run(root, f"learned-seed{seed}", layered(base, 1.0))
    write_run(root, "gated-off-seed0", {**layered(7.0, 0.0), "sink/extra_mass/layer_0": [0.1, 0.2, 0.3]})
    return root


def test_runs_group_by_directory_name_minus_the_seed_suffix(experiment):
    groups = runs.group(runs.expand([str(experiment)]))
    assert {arm: [r.name for r in members] for arm, members in groups.items()} == {
        "off": ["off-seed0", "off-seed1", "off-seed2"], "gated-off": ["gated-off-seed0"], "learned": ["learned-seed0", "learned-seed1"]}
    assert list(groups)[0] == "off", "the baseline arm first"


def test_a_pattern_names_every_run_directory_it_matches(experiment):
    assert [r.name for r in runs.expand([str(experiment / "off-seed*"), str(experiment / "*-off-seed?")])] == [
        "off-seed0", "off-seed1", "off-seed2", "gated-off-seed0"]


def test_a_pattern_that_matches_nothing_is_refused(experiment):
    with pytest.raises(ValueError, match=r"--run '.*nope-\*' matches no directory"):
        runs.expand([str(experiment / "nope-*")])


def test_one_experiment_directory_is_taken_bare_on_the_command_line(experiment, tmp_path):
    eval_cli.main(["compare", "--run", str(experiment), "--out", str(tmp_path / "out"), "--metrics", "[train/loss]"])
    assert "6 runs in 3 arms" in (tmp_path / "out" / "summary.md").read_text()


def table_rows(path) -> dict[str, list[str]]:
    return {line.split(" | ")[0].strip("| "): line.strip("|").split(" | ") for line in path.read_text().splitlines()
            if line.startswith("| ") and "---" not in line}


def test_the_table_gives_each_arms_late_window_median_and_range_baseline_first(experiment, tmp_path):
    eval_cli.compare([str(experiment)], out=str(tmp_path / "out"), metrics=["train/loss", "gsink/ratio/median", "sink/extra_mass/layer_0"],
                     window=0.5)
    summary = tmp_path / "out" / "summary.md"
    rows = table_rows(summary)
    assert list(rows)[:2] == ["arm", "off"], "the baseline arm comes first"
    # window 0.5 of 3 logged steps: the last 2; a run's late value is their median, a cell the median over runs (range)
    late = lambda values: statistics.median(values[1:])
    loss = sorted(late([base + 3 - s / 10 for s in range(3)]) for base in (1.0, 2.0, 4.0))
    # a per-layer quantity's /median: each layer's late median first, then the median over the layers (not the column's own)
    ratio = sorted(statistics.median(late([base + l + 0.5 * s for s in range(3)]) for l in range(2)) for base in (1.0, 2.0, 4.0))
    assert rows["off"][1:4] == ["3", f"{loss[1]:.3g} ({loss[0]:.3g}-{loss[2]:.3g})", f"{ratio[1]:.3g} ({ratio[0]:.3g}-{ratio[2]:.3g})"]
    assert rows["gated-off"][1:4] == ["1", f"{late([10.0, 9.9, 9.8]):.3g}", "7.5"], "one run: its value alone"
    assert rows["gated-off"][4].strip() == "0.25" and rows["off"][4].strip() == "-", "a metric only some arms log"
    for name in ("curves.png", "effects.png", "profile.png"):
        assert (tmp_path / "out" / name).stat().st_size > 10_000


def test_each_arm_is_compared_with_the_baseline_paired_by_seed(experiment, tmp_path):
    eval_cli.compare([str(experiment)], out=str(tmp_path / "out"), metrics=["train/loss", "gsink/ratio/median"])
    record = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert record["baseline"] == "off" and set(record["effects"]) == {"learned"}, "gated-off has no seed the baseline shares but 0: one pair"
    ratio = record["effects"]["learned"]["gsink/ratio/median"]
    off, learned = record["arms"]["off"]["late"]["gsink/ratio/median"], record["arms"]["learned"]["late"]["gsink/ratio/median"]
    assert ratio["n"] == 2 and ratio["scale"] == "ratio"
    assert ratio["estimate"] == pytest.approx(math.sqrt((learned["0"] / off["0"]) * (learned["1"] / off["1"])))
    loss = record["effects"]["learned"]["train/loss"]
    assert loss["scale"] == "difference"
    assert loss["estimate"] == pytest.approx(statistics.mean(record["arms"]["learned"]["late"]["train/loss"][s] - record["arms"]["off"]["late"]["train/loss"][s] for s in "01"))
    lines = (tmp_path / "out" / "summary.md").read_text()
    assert "**Against off, paired by seed.**" in lines and "- gsink/ratio/median: learned / off = " in lines


def test_curves_read_each_runs_values_by_step_and_the_final_profile_is_their_mean_and_std(experiment):
    series = [read_metrics(experiment / f"learned-seed{s}") for s in (0, 1)]
    assert runs.values_by_step(series, "train/loss") == [(step, pytest.approx([13 - i / 10, 17 - i / 10])) for i, step in enumerate(STEPS)]
    means, stds = runs.final_profile(series, ["sink/alpha"])
    assert means == {"sink/alpha/layer_0": pytest.approx(14.0), "sink/alpha/layer_1": pytest.approx(15.0)}
    assert stds["sink/alpha/layer_1"] == pytest.approx(statistics.stdev([12.0, 16.0]))


def test_explicit_labels_rename_arms_or_pool_runs_and_yaml_boolean_words_stay_strings(experiment, tmp_path):
    eval_cli.main(["compare", "--run", f"[{experiment}/off-seed0, {experiment}/learned-seed0]", "--label", "[off, on]",
                   "--metrics", "[train/loss]", "--out", str(tmp_path / "two")])
    assert "| off | 1 |" in (tmp_path / "two" / "summary.md").read_text() and "| on | 1 |" in (tmp_path / "two" / "summary.md").read_text()
    dirs = runs.expand([str(experiment)])
    renamed = runs.group(dirs, ["gated", "v-scale", "baseline"])
    assert [len(r) for r in renamed.values()] == [1, 2, 3] and list(renamed) == ["gated", "v-scale", "baseline"]
    pooled = runs.group(dirs, ["x", "y", "y", "x", "x", "x"])
    assert [r.name for r in pooled["y"]] == ["learned-seed0", "learned-seed1"]


@pytest.mark.parametrize("args, message", [
    (dict(label=["a", "b"]), r"--label: give one label per run \(6\) or per arm \(3: gated-off, learned, off\); got 2"),
    (dict(metrics=["gsink/ratio/meadian"]), r"--metrics \['gsink/ratio/meadian'\]: no run logged them; metrics.csv has e.g. gsink/ratio/median"),
    (dict(run=[]), r"--run: give run directories"),
    (dict(baseline="of"), r"--baseline of: no such arm; the arms are off, gated-off, learned"),
    (dict(window=0.0), r"--window 0.0: give the fraction of each run's logged steps to summarise, in \(0, 1\]"),
], ids=["labels", "metric", "no-run", "baseline", "window"])
def test_bad_compare_input_is_refused_before_drawing(experiment, tmp_path, args, message):
    with pytest.raises(ValueError, match=message):
        eval_cli.compare(**{"run": [str(experiment)], "out": str(tmp_path / "out"), "metrics": ["train/loss"], **args})
    assert not (tmp_path / "out").exists()


def test_checkpoints_of_one_arm_are_found_by_run_directory_or_label():
    ckpts = ["runs/bb/off-seed0/checkpoints/last.ckpt", "runs/bb/off-seed1/checkpoints/last.ckpt", "export/gated-off-seed0"]
    assert runs.checkpoint_arms(ckpts, ckpts, labelled=False) == {"off": ckpts[:2], "gated-off": ckpts[2:]}
    assert runs.checkpoint_arms(ckpts, ["a-seed3", "b", "a-seed4"], labelled=True) == {"a": ["a-seed3", "a-seed4"], "b": ["b"]}


def test_an_arms_measurements_are_pooled_as_mean_and_sample_std_of_what_every_member_measured():
    results = {"s0": {"perplexity": {"ppl": 10.0}, "needle": {"full": {"single": {"128": {"mean": 0.2, "per_seed": [0.1, 0.3]}}}}, "only": 1.0},
               "s1": {"perplexity": {"ppl": 14.0}, "needle": {"full": {"single": {"128": {"mean": 0.6, "per_seed": [0.5, 0.7]}}}}},
               "x": {"perplexity": {"ppl": 3.0, "tokens": 100}}}
    pooled = runs.pool(results, {"a": ["s0", "s1"], "b": ["x"]})
    assert pooled["a"]["checkpoints"] == ["s0", "s1"]
    assert pooled["a"]["results"]["perplexity.ppl"] == {"mean": 12.0, "std": pytest.approx(statistics.stdev([10.0, 14.0])), "n": 2}
    assert pooled["a"]["results"]["needle.full.single.128.mean"]["mean"] == pytest.approx(0.4)
    assert set(pooled["a"]["results"]) == {"perplexity.ppl", "needle.full.single.128.mean"}, "lists and what one member lacks are left out"
    assert pooled["b"]["results"] == {"perplexity.ppl": {"mean": 3.0, "std": None, "n": 1}, "perplexity.tokens": {"mean": 100.0, "std": None, "n": 1}}


def test_the_headline_names_the_arms_on_each_side_and_those_without_a_difference(experiment, tmp_path):
    effect = lambda estimate, low, high, p: {"metric": "gsink/ratio/max", "scale": "ratio", "n": 10, "estimate": estimate, "low": low,
                                             "high": high, "p": p, "per_seed": {}}
    record = {"baseline": "off", "effects": {"fixed": {"gsink/ratio/max": effect(0.2, 0.1, 0.4, 0.002)},
                                             "learned": {"gsink/ratio/max": effect(0.5, 0.2, 1.3, 0.08)},
                                             "backward": {"gsink/ratio/max": effect(3.0, 1.5, 6.0, 0.01)}}}
    assert headline(record, "gsink/ratio/max", "the gradient sink") == (
        "Against off, the gradient sink (`gsink/ratio/max`, late window, paired by seed): lower with fixed; higher with backward; "
        "no difference established with learned.")


def test_an_aggregate_over_layers_that_train_py_does_not_log_is_drawn_from_its_layers(experiment, tmp_path):
    series = runs.with_layer_aggregate(read_metrics(experiment / "off-seed0"), "act/v_ratio/min")
    assert series["act/v_ratio/min"] == [(step, min(1.0 + 0.5 * i, 2.0 + 0.5 * i)) for i, step in enumerate(STEPS)]
    eval_cli.compare([str(experiment)], out=str(tmp_path / "out"), metrics=["act/v_ratio/min"])
    assert "act/v_ratio/min" in (tmp_path / "out" / "summary.md").read_text()
