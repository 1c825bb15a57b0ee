"""scripts/keep_runs.py keeps what a study compares of a finished run: eval.py compare reads the kept copy as it
reads the run itself, and an unfinished or already kept run is left alone."""

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import train

from vscale.runs import late, read_metrics

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("keep_runs", ROOT / "scripts" / "keep_runs.py")
keep_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(keep_runs)
METRICS = [
    "val/loss",
    "sink/alpha/max",
    "sink/rate/mean",
    "gsink/ratio/median",
    "act/h_out_ratio/max",
    "act/h_out_t0/max",
    "act/r_mlp_t0/mean",
    "act/v_ratio/min",
    "sink/extra_mass/mean",
]
"""Every quantity the README's studies compare; `sink/extra_mass` exists only for the arms with a no-token slot."""


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    train(
        root,
        "--trainer.max_steps=20",
        "--run.val_every_n_steps=10",
        "--model.attention=sink_logit",
        config="configs/bb.yaml",
    )
    return root / "bb"


def test_a_kept_run_has_the_late_values_of_the_run(finished, tmp_path):
    keep_runs.main([str(finished), "--out", str(tmp_path)])
    (run,) = finished.iterdir()
    original, kept = read_metrics(run), read_metrics(tmp_path / run.name)
    assert all(late.late_value(kept, m) == late.late_value(original, m) is not None for m in METRICS)
    assert json.loads((tmp_path / run.name / "late.json").read_text()) == json.loads((run / "late.json").read_text())
    assert len(kept) < len(original) / 3, "only the compared quantities are kept"


def test_an_unfinished_run_is_not_kept(finished, tmp_path):
    (run,) = finished.iterdir()
    unfinished = tmp_path / "runs" / run.name
    unfinished.mkdir(parents=True)
    (unfinished / "metrics.csv").write_text((run / "metrics.csv").read_text())
    assert not keep_runs.keep(unfinished, tmp_path / "kept")


def test_a_kept_run_is_not_copied_again(finished, tmp_path):
    (run,) = finished.iterdir()
    assert keep_runs.keep(run, tmp_path)
    assert not keep_runs.keep(run, tmp_path)


def test_only_the_runs_a_pattern_names_are_kept(finished, tmp_path):
    (run,) = finished.iterdir()
    keep_runs.main([str(finished), "--out", str(tmp_path / "other"), "--match", "gated-*", "off-seed*"])
    keep_runs.main([str(finished), "--out", str(tmp_path / "named"), "--match", "gated-*", "sink_logit-off-seed*"])
    assert not (tmp_path / "other").exists() and (tmp_path / "named" / run.name / "late.json").is_file()
