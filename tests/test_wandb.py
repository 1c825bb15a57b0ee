"""wandb through Lightning's WandbLogger: offline without credentials, pairs grouped by experiment."""

import json

import pytest
import wandb
from conftest import train, wait_until

from vscale.eval import cli as eval_cli
from vscale.runs import wandb_offline


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))


def wait_for_offline_record(run_dir, keys, timeout: float = 60.0) -> None:
    """Until the offline run's .wandb file holds every key, failing after `timeout` s if it never does: wandb's
    service process writes the file, and under load its last records (the summary) can land after wandb.finish()
    returns."""

    def record() -> bytes:
        (path,) = run_dir.glob("wandb/offline-run-*/*.wandb")
        return path.read_bytes()

    wait_until(lambda: all(key.encode() in record() for key in keys), timeout, f"the offline record to hold {keys}")


def test_wandb_is_offline_without_credentials(no_credentials):
    assert wandb_offline()


def test_wandb_is_online_with_an_api_key(no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert not wandb_offline()


def test_wandb_is_offline_when_wandb_mode_says_so(no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_offline()


def test_enabled_wandb_writes_an_offline_run_grouped_tagged_with_the_profile_image(tmp_path, no_credentials):
    cli = train(
        tmp_path,
        "--run.wandb=true",
        "--model.vscale=learned",
        "--trainer.max_steps=11",
        "--run.val_every_n_steps=11",
        "--run.wandb_tags=[pilot]",
    )
    try:
        run = cli.trainer.loggers[1].experiment
        assert run.offline and run.group == "tiny" and run.name == "tiny/learned-seed0"
        assert set(run.tags) == {"vscale=learned", "attention=softmax", "seed=0", "pilot"}
    finally:
        wandb.finish()
    runs = list((tmp_path / "tiny" / "learned-seed0" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert list(runs[0].glob("files/media/images/diagnostics/profile_*.png"))


def test_a_resumed_run_logs_into_the_same_wandb_run(tmp_path, no_credentials):
    args = ["--run.wandb=true", "--run.val_every_n_steps=1000", "--run.ckpt_every=3"]
    try:
        first = train(tmp_path, "--trainer.max_steps=3", *args).trainer.loggers[1].experiment.id
        wandb.finish()
        second = train(tmp_path, "--trainer.max_steps=5", "--ckpt_path=last", *args).trainer.loggers[1].experiment.id
    finally:
        wandb.finish()
    assert first == second == (tmp_path / "tiny" / "off-seed0" / "wandb_id").read_text()
    runs = sorted((tmp_path / "tiny" / "off-seed0" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith(first) for r in runs)


def test_the_run_summary_holds_the_late_window_medians_eval_compare_reports(tmp_path, no_credentials):
    """The runs table compares stable numbers: each metric's late-window median, the statistic of eval.py compare."""
    try:
        train(
            tmp_path,
            "--run.wandb=true",
            "--trainer.max_steps=40",
            "--run.val_every_n_steps=20",
            "--diagnostics.every_n_steps=10",
            config="configs/bb.yaml",  # a step a quarter of tiny's: the summary is the subject
        )
    finally:
        wandb.finish()
    run_dir = tmp_path / "bb" / "off-seed2"
    summary = json.loads((run_dir / "late.json").read_text())
    wait_for_offline_record(run_dir, summary)  # fails unless every late-window median reaches the wandb run's record
    eval_cli.compare(
        [str(run_dir)],
        out=str(tmp_path / "compare"),
        metrics=["train/loss", "val/loss", "gsink/ratio/max", "sink/alpha/median"],
    )
    compared = json.loads((tmp_path / "compare" / "summary.json").read_text())["arms"]["off"]["late"]
    for metric in ("train/loss", "val/loss", "gsink/ratio/max", "sink/alpha/median"):
        assert summary[f"late/{metric}"] == pytest.approx(compared[metric]["2"], rel=1e-9), metric
    assert (
        not any(k.startswith("late/") and "/layer_" in k for k in summary)
        and "late/train/device/items_per_sec" not in summary
    )
