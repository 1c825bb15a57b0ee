"""scripts/needle_study.py measures each finished needle run at its checkpoints into the run's kept copy, as columns
`eval.py compare` summarises like any training metric: the accuracy curve, the retrieval onset, and at the final
checkpoint the accuracies, drops and perplexities in full precision and under W8A8. The runs are real train.py runs of
configs/needle-tiny.yaml, a few steps each: `off` fine-tuned from assets/needle-tiny (it retrieves), `learned` from
scratch (it does not)."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from conftest import train

from vscale.eval import needle
from vscale.eval.checkpoints import load_checkpoint
from vscale.eval.compare import compare
from vscale.eval.curves import seed_lines_figure
from vscale.runs import late, read_metrics

ROOT = Path(__file__).resolve().parents[1]


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


needle_study, study_tables = script("needle_study"), script("study_tables")
SMALL = [
    "--trainer.max_steps=2",
    "--run.ckpt_every=1",
    "--run.val_every_n_steps=1",
    "--diagnostics.every_n_steps=1",
    "--trainer.limit_val_batches=1",
    "--trainer.log_every_n_steps=1",
    "--data.batch_size=4",
    "--data.train_files=[data/tiny/val.jsonl]",
]
RETRIEVES = [
    "--model.model_config=null",
    "--model.pretrained=assets/needle-tiny",
    "--model.lr=1e-7",
    "--model.min_lr=1e-7",
    "--model.warmup_steps=0",
]
PROTOCOL = [
    "--seeds",
    "0",
    "1",
    "--n",
    "4",
    "--quant",
    "per_tensor",
    "--batches",
    "1",
    "--calib_batches",
    "1",
    "--cpu_capability",
    "none",
]
SETTINGS = needle_study.Settings(quant=["per_tensor"], seeds=[0, 1], n=4, batches=1, calib_batches=1)
FINAL = [
    "needle/full/single/128",
    "needle/per_tensor/single/128",
    "needle/full/multi/128",
    "needle/drop_per_tensor/single/128",
    "ppl/full",
    "ppl/per_tensor",
    "needle/onset_step",
    "needle/onset_reached",
]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for seed in (0, 1):
        train(root, *SMALL, *RETRIEVES, f"--seed_everything={seed}", config="configs/needle-tiny.yaml")
        train(root, *SMALL, "--model.vscale=learned", f"--seed_everything={seed}", config="configs/needle-tiny.yaml")
    return root / "needle-tiny"


@pytest.fixture(scope="module")
def kept(experiment, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kept")
    needle_study.main([str(experiment), "--out", str(out), *PROTOCOL])
    return out


def test_the_curve_column_is_the_needle_accuracy_of_each_checkpoint(experiment, kept):
    curve = dict(read_metrics(kept / "off-seed0")[needle_study.CURVE])
    assert sorted(curve) == [1, 2]
    for step, path in needle_study.checkpoints(experiment / "off-seed0").items():
        loaded = load_checkpoint(str(path))
        p = needle_study.protocol(loaded.data, SETTINGS)
        direct = needle.evaluate(loaded.model, p.tokenizer, p.texts, [128], [0, 1], 4, "single")[128]["mean"]
        assert curve[step] == direct
    assert curve[1] >= 0.5, "the fine-tuned checkpoint retrieves: the measurement measures something"


def test_a_retrieving_run_has_its_onset_at_its_first_checkpoint_that_reaches_the_threshold(kept):
    final = json.loads((kept / "off-seed0" / "needle.json").read_text())["final"]
    assert (final["needle/onset_step"], final["needle/onset_reached"]) == (1, 1)


def test_a_run_that_never_retrieves_has_its_onset_one_checkpoint_interval_past_its_last(kept):
    metrics = read_metrics(kept / "learned-seed0")
    assert max(v for _, v in metrics[needle_study.CURVE]) < needle_study.ONSET
    assert metrics["needle/onset_step"] == [(2, 3.0)] and metrics["needle/onset_reached"] == [(2, 0.0)]


def test_the_onset_is_the_first_step_at_the_threshold_even_where_accuracy_falls_again():
    assert needle_study.onset({250: 0.1, 500: 0.5, 750: 0.2}) == (500, 1)
    assert needle_study.onset({250: 0.1, 500: 0.4, 750: 0.2}) == (1000, 0)


def test_compare_reads_each_final_measurement_as_the_runs_late_value(kept):
    for run in ("off-seed0", "learned-seed1"):
        final, series = json.loads((kept / run / "needle.json").read_text())["final"], read_metrics(kept / run)
        assert all(late.late_value(series, m) == final[m] for m in FINAL)
        assert all(len(series[m]) == 1 for m in FINAL), "logged once, at the final checkpoint"


def test_the_drop_is_full_precision_minus_the_mode(kept):
    final = json.loads((kept / "off-seed0" / "needle.json").read_text())["final"]
    assert (
        final["needle/drop_per_tensor/single/128"]
        == final["needle/full/single/128"] - final["needle/per_tensor/single/128"]
    )


def test_the_kept_training_columns_are_unchanged_beside_the_needle_columns(experiment, kept):
    original, measured = read_metrics(experiment / "off-seed0"), read_metrics(kept / "off-seed0")
    assert all(
        measured[m] == original[m] for m in ("val/loss", "sink/alpha/max", "gsink/ratio/max", "act/v_ratio/mean")
    )


def test_a_measured_run_is_not_measured_again(experiment, kept):
    before = {p: p.read_text() for p in kept.glob("*/*")}
    assert needle_study.study(experiment, kept, SETTINGS) == []
    assert {p: p.read_text() for p in kept.glob("*/*")} == before


def test_measuring_a_run_again_replaces_its_needle_columns(kept, tmp_path):
    run = shutil.copytree(kept / "off-seed0", tmp_path / "off-seed0")
    before = (run / "metrics.csv").read_text()
    needle_study.add_columns(run, needle_study.columns(json.loads((run / "needle.json").read_text())))
    assert (run / "metrics.csv").read_text() == before


def test_an_unfinished_run_is_neither_kept_nor_measured(experiment, tmp_path):
    unfinished = tmp_path / "runs" / "off-seed0"
    shutil.copytree(experiment / "off-seed0", unfinished)
    (unfinished / "late.json").unlink()
    assert needle_study.study(unfinished.parent, tmp_path / "kept", SETTINGS) == []
    assert not (tmp_path / "kept" / "off-seed0").exists()


def test_the_figure_draws_a_thin_line_per_seed_and_a_thick_mean_per_arm(kept):
    fig = seed_lines_figure(needle_study.arm_curves(kept), "accuracy", threshold=needle_study.ONSET)
    for ax, arm in zip(fig.axes, ("off", "learned")):
        widths = sorted(line.get_linewidth() for line in ax.lines if line.get_linestyle() == "-")
        assert ax.get_title().startswith(arm) and widths[:2] == [0.8, 0.8] and widths[2] > 2


def test_the_readme_block_says_each_compared_metric_and_the_drop_of_every_run(kept, tmp_path):
    compare(
        run=[str(kept)], out=str(tmp_path), baseline="off", metrics=FINAL[:6] + ["needle/onset_step", "gsink/ratio/max"]
    )
    record = json.loads((tmp_path / "summary.json").read_text())
    block = study_tables.needle_modes(record)
    sentences = [line for line in block.splitlines() if line.startswith("**Against off") and "late window" in line]
    assert len(sentences) == 8 and all("learned" in s for s in sentences)
    for arm in ("off", "learned"):
        drops = record["arms"][arm]["late"]["needle/drop_per_tensor/single/128"]
        assert f"| {arm} | {drops['0']:+.3f} | {drops['1']:+.3f} | " in block
