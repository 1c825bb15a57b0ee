"""eval.py compare: runs grouped into arms by their directory names (or labels), each run summarised by its late window,
arms compared with the baseline paired by seed; computed here by hand from the metrics.csv files written for the
test."""

import csv
import json
import math
import statistics

import pytest

from vscale.eval import cli as eval_cli, runs
from vscale.eval.compare import analysis, comparisons
from vscale.eval.verdicts import headline, seeds_needed, summary_lines
from vscale.runs import read_metrics

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
    out = {
        "train/loss": [base + 3 - s / 10 for s in range(3)],
        "gsink/ratio/median": [base * (s + 1) for s in range(3)],
    }
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
        "off": ["off-seed0", "off-seed1", "off-seed2"],
        "gated-off": ["gated-off-seed0"],
        "learned": ["learned-seed0", "learned-seed1"],
    }
    assert list(groups)[0] == "off", "the baseline arm first"


def test_a_pattern_names_every_run_directory_it_matches(experiment):
    assert [r.name for r in runs.expand([str(experiment / "off-seed*"), str(experiment / "*-off-seed?")])] == [
        "off-seed0",
        "off-seed1",
        "off-seed2",
        "gated-off-seed0",
    ]


def test_a_character_class_pattern_in_a_quoted_list_item_names_its_runs(experiment, tmp_path):
    run = f'["{experiment}/off-seed[02]", {experiment}/learned-seed1]'
    eval_cli.main(["compare", "--run", run, "--out", str(tmp_path / "out"), "--metrics", "[train/loss]"])
    assert "3 runs in 2 arms" in (tmp_path / "out" / "summary.md").read_text()


def test_a_pattern_that_matches_nothing_is_refused(experiment):
    with pytest.raises(ValueError, match=r"--run '.*nope-\*' matches no directory"):
        runs.expand([str(experiment / "nope-*")])


def test_one_experiment_directory_is_taken_bare_on_the_command_line(experiment, tmp_path):
    eval_cli.main(["compare", "--run", str(experiment), "--out", str(tmp_path / "out"), "--metrics", "[train/loss]"])
    assert "6 runs in 3 arms" in (tmp_path / "out" / "summary.md").read_text()


def table_rows(path) -> dict[str, list[str]]:
    return {
        line.split(" | ")[0].strip("| "): line.strip("|").split(" | ")
        for line in path.read_text().splitlines()
        if line.startswith("| ") and "---" not in line
    }


def test_the_table_gives_each_arms_late_window_median_and_range_baseline_first(experiment, tmp_path):
    eval_cli.compare(
        [str(experiment)],
        out=str(tmp_path / "out"),
        metrics=["train/loss", "gsink/ratio/median", "sink/extra_mass/layer_0"],
        window=0.5,
    )
    summary = tmp_path / "out" / "summary.md"
    rows = table_rows(summary)
    assert list(rows)[:2] == ["arm", "off"], "the baseline arm comes first"
    # window 0.5 of 3 logged steps: the last 2; a run's late value is their median, a cell the median over runs (range)
    late = lambda values: statistics.median(values[1:])
    loss = sorted(late([base + 3 - s / 10 for s in range(3)]) for base in (1.0, 2.0, 4.0))
    # a per-layer quantity's /median: each layer's late median first, then the median over the layers (not the
    # column's own)
    ratio = sorted(
        statistics.median(late([base + l + 0.5 * s for s in range(3)]) for l in range(2)) for base in (1.0, 2.0, 4.0)
    )
    assert rows["off"][1:4] == [
        "3",
        f"{loss[1]:.3g} ({loss[0]:.3g}-{loss[2]:.3g})",
        f"{ratio[1]:.3g} ({ratio[0]:.3g}-{ratio[2]:.3g})",
    ]
    assert rows["gated-off"][1:4] == ["1", f"{late([10.0, 9.9, 9.8]):.3g}", "7.5"], "one run: its value alone"
    assert rows["gated-off"][4].strip() == "0.25" and rows["off"][4].strip() == "-", "a metric only some arms log"
    for name in ("curves.png", "effects.png", "profile.png"):
        assert (tmp_path / "out" / name).stat().st_size > 10_000


def test_each_arm_is_compared_with_the_baseline_paired_by_seed(experiment, tmp_path):
    eval_cli.compare([str(experiment)], out=str(tmp_path / "out"), metrics=["train/loss", "gsink/ratio/median"])
    record = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert record["baseline"] == "off" and set(record["effects"]) == {"learned"}, (
        "gated-off has no seed the baseline shares but 0: one pair"
    )
    ratio = record["effects"]["learned"]["gsink/ratio/median"]
    off, learned = (
        record["arms"]["off"]["late"]["gsink/ratio/median"],
        record["arms"]["learned"]["late"]["gsink/ratio/median"],
    )
    assert ratio["n"] == 2 and ratio["scale"] == "ratio"
    assert ratio["estimate"] == pytest.approx(math.sqrt((learned["0"] / off["0"]) * (learned["1"] / off["1"])))
    loss = record["effects"]["learned"]["train/loss"]
    assert loss["scale"] == "difference"
    assert loss["estimate"] == pytest.approx(
        statistics.mean(
            record["arms"]["learned"]["late"]["train/loss"][s] - record["arms"]["off"]["late"]["train/loss"][s]
            for s in "01"
        )
    )
    lines = (tmp_path / "out" / "summary.md").read_text()
    assert "**Against off, paired by seed.**" in lines and "- gsink/ratio/median: learned / off = " in lines


def test_a_comparison_of_fewer_than_six_seeds_prints_no_interval_and_says_why(experiment, tmp_path):
    eval_cli.compare([str(experiment)], out=str(tmp_path / "out"), metrics=["gsink/ratio/median"])
    lines = (tmp_path / "out" / "summary.md").read_text()
    assert "- gsink/ratio/median: learned / off = " in lines and "(95% CI none at n = 2;" in lines
    assert "Below 6 paired seeds there is no interval, and so no direction" in lines


def test_curves_read_each_runs_values_by_step_and_the_final_profile_is_their_mean_and_std(experiment):
    series = [read_metrics(experiment / f"learned-seed{s}") for s in (0, 1)]
    assert runs.values_by_step(series, "train/loss") == [
        (step, pytest.approx([13 - i / 10, 17 - i / 10])) for i, step in enumerate(STEPS)
    ]
    means, stds = runs.final_profile(series, ["sink/alpha"])
    assert means == {"sink/alpha/layer_0": pytest.approx(14.0), "sink/alpha/layer_1": pytest.approx(15.0)}
    assert stds["sink/alpha/layer_1"] == pytest.approx(statistics.stdev([12.0, 16.0]))


def test_explicit_labels_rename_arms_or_pool_runs_and_yaml_boolean_words_stay_strings(experiment, tmp_path):
    eval_cli.main(
        [
            "compare",
            "--run",
            f"[{experiment}/off-seed0, {experiment}/learned-seed0]",
            "--label",
            "[off, on]",
            "--metrics",
            "[train/loss]",
            "--out",
            str(tmp_path / "two"),
        ]
    )
    assert (
        "| off | 1 |" in (tmp_path / "two" / "summary.md").read_text()
        and "| on | 1 |" in (tmp_path / "two" / "summary.md").read_text()
    )
    dirs = runs.expand([str(experiment)])
    renamed = runs.group(dirs, ["gated", "v-scale", "baseline"])
    assert [len(r) for r in renamed.values()] == [1, 2, 3] and list(renamed) == ["gated", "v-scale", "baseline"]
    pooled = runs.group(dirs, ["x", "y", "y", "x", "x", "x"])
    assert [r.name for r in pooled["y"]] == ["learned-seed0", "learned-seed1"]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            dict(label=["a", "b"]),
            r"--label: give one label per run \(6\) or per arm \(3: gated-off, learned, off\); got 2",
        ),
        (
            dict(metrics=["gsink/ratio/meadian"]),
            r"--metrics \['gsink/ratio/meadian'\]: no run logged them; metrics.csv has e.g. gsink/ratio/median",
        ),
        (dict(run=[]), r"--run: give run directories"),
        (dict(baseline="of"), r"--baseline of: no such arm; the arms are off, gated-off, learned"),
        (dict(window=0.0), r"--window 0.0: give the fraction of each run's logged steps to summarise, in \(0, 1\]"),
    ],
    ids=["labels", "metric", "no-run", "baseline", "window"],
)
def test_bad_compare_input_is_refused_before_drawing(experiment, tmp_path, args, message):
    with pytest.raises(ValueError, match=message):
        eval_cli.compare(**{"run": [str(experiment)], "out": str(tmp_path / "out"), "metrics": ["train/loss"], **args})
    assert not (tmp_path / "out").exists()


def test_checkpoints_of_one_arm_are_found_by_run_directory_or_label():
    ckpts = [
        "runs/bb/off-seed0/checkpoints/last.ckpt",
        "runs/bb/off-seed1/checkpoints/last.ckpt",
        "export/gated-off-seed0",
    ]
    assert runs.checkpoint_arms(ckpts, ckpts, labelled=False) == {"off": ckpts[:2], "gated-off": ckpts[2:]}
    assert runs.checkpoint_arms(ckpts, ["a-seed3", "b", "a-seed4"], labelled=True) == {
        "a": ["a-seed3", "a-seed4"],
        "b": ["b"],
    }


def test_an_arms_measurements_are_pooled_as_mean_and_sample_std_of_what_every_member_measured():
    results = {
        "s0": {
            "perplexity": {"ppl": 10.0},
            "needle": {"full": {"single": {"128": {"mean": 0.2, "per_seed": [0.1, 0.3]}}}},
            "only": 1.0,
        },
        "s1": {
            "perplexity": {"ppl": 14.0},
            "needle": {"full": {"single": {"128": {"mean": 0.6, "per_seed": [0.5, 0.7]}}}},
        },
        "x": {"perplexity": {"ppl": 3.0, "tokens": 100}},
    }
    pooled = runs.pool(results, {"a": ["s0", "s1"], "b": ["x"]})
    assert pooled["a"]["checkpoints"] == ["s0", "s1"]
    assert pooled["a"]["results"]["perplexity.ppl"] == {
        "mean": 12.0,
        "std": pytest.approx(statistics.stdev([10.0, 14.0])),
        "n": 2,
    }
    assert pooled["a"]["results"]["needle.full.single.128.mean"]["mean"] == pytest.approx(0.4)
    assert set(pooled["a"]["results"]) == {"perplexity.ppl", "needle.full.single.128.mean"}, (
        "lists and what one member lacks are left out"
    )
    assert pooled["b"]["results"] == {
        "perplexity.ppl": {"mean": 3.0, "std": None, "n": 1},
        "perplexity.tokens": {"mean": 100.0, "std": None, "n": 1},
    }


def effect(estimate: float, low: float, high: float, p: float, metric: str = "gsink/ratio/max") -> dict:
    """An effect as summary.json holds it (its p adjusted over a family of one)."""
    return {
        "metric": metric,
        "scale": "ratio",
        "n": 10,
        "estimate": estimate,
        "low": low,
        "high": high,
        "p": p,
        "per_seed": {},
    }


SIDES = {
    "baseline": "off",
    "effects": {
        "fixed": {"gsink/ratio/max": effect(0.2, 0.1, 0.4, 0.002)},
        "learned": {"gsink/ratio/max": effect(0.5, 0.2, 1.3, 0.08)},
        "backward": {"gsink/ratio/max": effect(3.0, 1.5, 6.0, 0.01)},
    },
}


def test_the_headline_names_the_arms_on_each_side_with_their_estimates_and_adjusted_p():
    assert headline(SIDES, "gsink/ratio/max", "the gradient sink").startswith(
        "Against off, the gradient sink (`gsink/ratio/max`, late window, paired by seed): lower with fixed (0.2, 95% "
        "CI 0.1 to 0.4, adjusted p 0.002); higher with backward (3, 95% CI 1.5 to 6, adjusted p 0.01); no difference "
        "established with learned (0.5, 95% CI 0.2 to 1.3, adjusted p 0.08)."
    )


def test_arms_on_different_sides_are_called_different_only_where_their_direct_comparison_establishes_it():
    record = {
        **SIDES,
        "pairwise": {
            "fixed": {
                "learned": {"gsink/ratio/max": effect(0.4, 0.2, 0.7, 0.004)},
                "backward": {"gsink/ratio/max": effect(0.07, 0.03, 0.2, 0.002)},
            },
            "learned": {"backward": {"gsink/ratio/max": effect(0.2, 0.04, 1.1, 0.06)}},
        },
    }
    assert headline(record, "gsink/ratio/max", "the gradient sink").endswith(
        " Distinguished by their direct comparison: fixed lower than learned, fixed lower than backward."
        " Not distinguished from each other by their direct comparison: learned and backward."
    )


def test_a_direct_comparison_stored_the_other_way_round_reads_reversed():
    record = {**SIDES, "pairwise": {"learned": {"fixed": {"gsink/ratio/max": effect(2.5, 1.4, 5.0, 0.004)}}}}
    sentence = headline(record, "gsink/ratio/max", "the gradient sink")
    assert " Distinguished by their direct comparison: fixed lower than learned." in sentence
    assert sentence.endswith(
        " Not distinguished from each other by their direct comparison: fixed and backward, learned and backward."
    )


def test_arms_on_one_side_need_no_direct_comparison():
    record = {
        "baseline": "off",
        "effects": {
            a: {"act/v_ratio/min": effect(0.2, 0.1, 0.3, 0.002, "act/v_ratio/min")} for a in ("fixed", "learned")
        },
    }
    assert headline(record, "act/v_ratio/min", "the value drain").endswith(
        "lower with fixed (0.2, 95% CI 0.1 to 0.3, adjusted p 0.002), "
        "learned (0.2, 95% CI 0.1 to 0.3, adjusted p 0.002)."
    )


@pytest.fixture
def three_arms(experiment):
    """The experiment with a second V-scale arm on two of the baseline's seeds."""
    for seed, base in enumerate([5.0, 3.0]):
        write_run(experiment, f"fixed-seed{seed}", layered(base, 0.25))
    return experiment


def test_every_pair_of_arms_other_than_the_baseline_is_compared_paired_by_seed(three_arms, tmp_path):
    eval_cli.compare([str(three_arms)], out=str(tmp_path / "out"), metrics=["train/loss", "gsink/ratio/median"])
    record = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {a: set(by_other) for a, by_other in record["pairwise"].items()} == {"fixed": {"learned"}}, (
        "gated-off shares one seed: no pair"
    )
    fixed, learned = (
        record["arms"]["fixed"]["late"]["gsink/ratio/median"],
        record["arms"]["learned"]["late"]["gsink/ratio/median"],
    )
    ratio = record["pairwise"]["fixed"]["learned"]["gsink/ratio/median"]
    assert ratio["estimate"] == pytest.approx(math.sqrt((fixed["0"] / learned["0"]) * (fixed["1"] / learned["1"])))
    assert record["correction"]["tests"] == {"effects": 4, "pairwise": 2}, (
        "fixed and learned x 2 metrics against off; 1 pair x 2"
    )
    assert "**Arms against each other, paired by seed**" in (tmp_path / "out" / "summary.md").read_text()


def test_each_p_is_adjusted_over_every_arm_and_metric_against_the_baseline(three_arms, tmp_path):
    eval_cli.compare([str(three_arms)], out=str(tmp_path / "out"), metrics=["train/loss", "gsink/ratio/median"])
    record = json.loads((tmp_path / "out" / "summary.json").read_text())
    family = [e for by_metric in record["effects"].values() for e in by_metric.values()]
    ranked = sorted(e["p"] for e in family)
    by_hand = [
        min(ranked[j] * len(ranked) / (j + 1) for j in range(i, len(ranked))) for i in range(len(ranked))
    ]  # BH: m p / rank, then the least above
    assert sorted(e["p_adjusted"] for e in family) == pytest.approx(by_hand)
    assert record["correction"]["method"] == "Benjamini-Hochberg"
    assert "Benjamini-Hochberg" in (tmp_path / "out" / "summary.md").read_text()


def test_a_metric_is_compared_on_one_scale_in_every_pair_of_arms():
    """sink/rate/mean is 0 in some baseline runs: a difference against the baseline, so a difference between the other
    arms too."""
    late = {
        "off": {"sink/rate/mean": {"0": 0.0, "1": 0.3, "2": 0.6}},
        "fixed": {"sink/rate/mean": {"0": 0.3, "1": 0.6, "2": 0.9}},
        "learned": {"sink/rate/mean": {"0": 0.6, "1": 0.6, "2": 0.3}},
    }
    out = comparisons(late, "off")
    assert out["pairwise"]["fixed"]["learned"]["sink/rate/mean"]["scale"] == "difference"
    assert out["pairwise"]["fixed"]["learned"]["sink/rate/mean"]["estimate"] == pytest.approx(0.1)


def study_of(seeds: int, ratios: dict[str, list[float]]) -> dict:
    """A summary.json's arms, off and learned: learned's late value is off's times ratios[metric][seed]."""
    off = {m: {str(s): 10.0 + s for s in range(seeds)} for m in ratios}
    learned = {m: {str(s): (10.0 + s) * r[s] for s in range(seeds)} for m, r in ratios.items()}
    return {
        "window": 0.25,
        "baseline": "off",
        "metrics": list(ratios),
        "arms": {
            arm: {"runs": [f"runs/bb/{arm}-seed{s}" for s in range(seeds)], "late": late}
            for arm, late in (("off", off), ("learned", learned))
        },
    }


def test_twenty_seeds_are_compared_also_in_their_two_halves():
    record = study_of(20, {"gsink/ratio/max": [0.1 * (1 + 0.01 * s) for s in range(20)]})
    halves = analysis(record)["halves"]
    assert [h["seeds"] for h in halves] == [[str(s) for s in range(10)], [str(s) for s in range(10, 20)]], (
        "numeric, not string, order"
    )
    assert halves[1]["effects"]["learned"]["gsink/ratio/max"]["estimate"] == pytest.approx(
        math.prod(0.1 * (1 + 0.01 * s) for s in range(10, 20)) ** 0.1
    )


def test_fewer_seeds_have_halves_only_when_asked():
    record = study_of(10, {"gsink/ratio/max": [0.1] * 10})
    assert "halves" not in analysis(record)
    assert [h["seeds"] for h in analysis(record, halves=True)["halves"]] == [
        ["0", "1", "2", "3", "4"],
        ["5", "6", "7", "8", "9"],
    ]
    with pytest.raises(ValueError, match="--halves: the runs have 3 seeds; halves of two pairs each need at least 4"):
        analysis(study_of(3, {"gsink/ratio/max": [0.1] * 3}), halves=True)


@pytest.fixture
def split_study():
    """20 seeds: gsink lower in every seed; alpha lower (x 0.1) in seeds 0-9 only, seeds 10-19 scattered both
    ways (x 0.5, x 1.5)."""
    record = study_of(
        20,
        {
            "gsink/ratio/max": [0.1 * (1 + 0.01 * s) for s in range(20)],
            "sink/alpha/max": [0.1 * (1 + 0.01 * s) for s in range(10)] + [0.5 + s % 2 for s in range(10)],
        },
    )
    return record | analysis(record)


def test_a_stated_direction_is_marked_by_whether_both_halves_state_it(split_study):
    lines = summary_lines(split_study)
    gsink, alpha = (
        next(line for line in lines if line.startswith(f"- {m}:")) for m in ("gsink/ratio/max", "sink/alpha/max")
    )
    assert gsink.endswith("learned lower than off; in both halves")
    assert alpha.endswith("learned lower than off; not in both halves")


def test_the_summary_has_a_row_per_arm_and_half(split_study):
    rows = [line for line in summary_lines(split_study) if line.startswith("| learned | ")]
    assert [r.split(" | ")[1] for r in rows] == ["20", "0-9", "10-19"], "the late-window table's row, then one per half"


def test_the_headline_marks_whether_a_stated_direction_holds_in_both_halves(split_study):
    assert headline(split_study, "gsink/ratio/max", "the gradient sink").endswith("; in both halves).")
    assert headline(split_study, "sink/alpha/max", "the attention sink").endswith("; not in both halves).")


def test_halves_are_asked_for_on_the_command_line(tmp_path):
    root = tmp_path / "runs" / "bb"
    for seed in range(4):
        write_run(root, f"off-seed{seed}", layered(1.0 + seed, 0.5))
        write_run(root, f"learned-seed{seed}", layered(2.0 + seed, 0.5))
    eval_cli.main(
        [
            "compare",
            "--run",
            str(root),
            "--out",
            str(tmp_path / "out"),
            "--metrics",
            "[gsink/ratio/median]",
            "--halves",
            "true",
        ]
    )
    record = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [h["seeds"] for h in record["halves"]] == [["0", "1"], ["2", "3"]]
    assert "**The two halves of the seeds**" in (tmp_path / "out" / "summary.md").read_text()


def test_the_seeds_sentence_gives_the_interval_at_ten_and_twenty_seeds_and_what_each_open_effect_needs():
    """Learned's log ratios alternate 0 and -1 over 10 seeds: mean -0.5, sd 0.527, an interval not excluding 1 after
    adjustment (p = 0.0625, 5 of 10 seeds at the null: too few for the signed-rank test)."""
    record = study_of(10, {"gsink/ratio/max": [math.exp(-(s % 2)) for s in range(10)]})
    record |= analysis(record)
    sd = statistics.stdev([-(s % 2) for s in range(10)])
    assert record["effects"]["learned"]["gsink/ratio/max"]["p_adjusted"] > 0.05
    sentence = seeds_needed(record, "gsink/ratio/max", "the gradient sink")
    assert sentence.startswith(
        f"Seeds for the gradient sink: a 95% interval spans x/÷ {math.exp(2.2622 * sd / math.sqrt(10)):.2g} at 10 "
        f"seeds and x/÷ {math.exp(2.0930 * sd / math.sqrt(20)):.2g} at 20 (t intervals at the spread of the arms' "
        "per-seed log ratios against off)"
    )
    # 1 test, so 95%: t(0.975; 6) = 2.4469 gives 2.4469 x 0.527 / sqrt(7) = 0.487 < 0.5 at 7 seeds;
    # t(0.975; 5) = 2.5706 gives 0.553 at 6
    assert sentence.endswith(
        "; at their sizes, learned's effect (0.607) would need about 7 "
        "seeds to exclude 1 at 1 - 0.05/1, the family's strictest level."
    )


def test_an_aggregate_over_layers_that_train_py_does_not_log_is_drawn_from_its_layers(experiment, tmp_path):
    series = runs.with_layer_aggregate(read_metrics(experiment / "off-seed0"), "act/v_ratio/min")
    assert series["act/v_ratio/min"] == [(step, min(1.0 + 0.5 * i, 2.0 + 0.5 * i)) for i, step in enumerate(STEPS)]
    eval_cli.compare([str(experiment)], out=str(tmp_path / "out"), metrics=["act/v_ratio/min"])
    assert "act/v_ratio/min" in (tmp_path / "out" / "summary.md").read_text()
