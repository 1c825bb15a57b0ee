"""Real Lightning training of the tiny config through train.py's CLI."""

import pytest
import torch
from conftest import logged_steps, metrics, train


def test_tiny_config_training_lowers_the_loss(tmp_path):
    """Forty steps, the warm-up shortened from the config's 30 to 5 so that most of them learn."""
    train(
        tmp_path,
        "--trainer.max_steps=40",
        "--model.warmup_steps=5",
        "--trainer.log_every_n_steps=1",
        "--run.val_every_n_steps=40",
    )
    run = tmp_path / "tiny" / "off-seed0"
    loss = metrics(run, "train/loss")
    assert len(loss) == 40
    first, last = loss[0], sum(loss[s] for s in range(30, 40)) / 10
    assert first > 8.0 and last < first - 1.5
    assert "val/ppl" in open(run / "metrics.csv").readline()
    assert (run / "config.yaml").is_file()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 40, (
        "the final step is kept"
    )


@pytest.mark.parametrize("dropout", [0.0, 0.2], ids=["no-dropout", "dropout"])
def test_resumed_run_continues_exactly(tmp_path, dropout):
    """With dropout the random state must come back with the checkpoint too."""
    common = [
        "--model.vscale=learned",
        "--trainer.log_every_n_steps=1",
        "--run.ckpt_every=6",
        "--run.val_every_n_steps=3",
        "--trainer.limit_val_batches=2",
        f"--model.model_config.attention_dropout={dropout}",
    ]
    train(tmp_path / "straight", "--trainer.max_steps=12", *common)
    train(tmp_path / "resumed", "--trainer.max_steps=6", *common)
    train(tmp_path / "resumed", "--trainer.max_steps=12", "--ckpt_path=last", *common)
    straight = metrics(tmp_path / "straight" / "tiny" / "learned-seed0", "train/loss")
    resumed = metrics(tmp_path / "resumed" / "tiny" / "learned-seed0", "train/loss")
    assert sorted(resumed) == list(range(12))
    assert len(logged_steps(tmp_path / "resumed" / "tiny" / "learned-seed0")) == 12
    for step in range(6, 12):
        assert resumed[step] == pytest.approx(straight[step], rel=1e-6, abs=1e-6), step


def test_learned_theta_is_trained_and_checkpointed(tmp_path):
    train(tmp_path, "--model.vscale=learned", "--trainer.max_steps=15", "--run.val_every_n_steps=1000")
    state = torch.load(tmp_path / "tiny" / "learned-seed0" / "checkpoints" / "last.ckpt", weights_only=False)
    thetas = {k: v for k, v in state["state_dict"].items() if k.endswith("vscale.theta")}
    assert len(thetas) == 4 and all(t.shape == (2,) and t.abs().max() > 0 for t in thetas.values())
    exp_avg = [s["exp_avg"] for s in state["optimizer_states"][0]["state"].values() if s["exp_avg"].shape == (2,)]
    assert len(exp_avg) == 4


def test_rerunning_a_run_that_holds_checkpoints_is_refused_and_leaves_it_intact(tmp_path):
    from vscale.errors import RunDirInUse

    train(tmp_path, "--trainer.max_steps=3", "--run.val_every_n_steps=1000")
    run = tmp_path / "tiny" / "off-seed0"
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    with pytest.raises(
        RunDirInUse, match=r"already holds checkpoints \(last\.ckpt\); continue it with --ckpt_path last.*--run\.name"
    ):
        train(tmp_path, "--trainer.max_steps=3", "--run.val_every_n_steps=1000")
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before


def test_extending_a_finished_run_adds_no_versioned_checkpoints(tmp_path):
    common = ["--run.ckpt_every=2", "--run.val_every_n_steps=1000", "--trainer.log_every_n_steps=1"]
    train(tmp_path, "--trainer.max_steps=4", *common)
    train(tmp_path, "--trainer.max_steps=4", "--ckpt_path=last", *common)
    train(tmp_path, "--trainer.max_steps=6", "--ckpt_path=last", *common)
    run = tmp_path / "tiny" / "off-seed0"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "last.ckpt",
        "step0000002.ckpt",
        "step0000004.ckpt",
        "step0000006.ckpt",
    ]
    assert logged_steps(run) == list(range(6))


def test_the_progress_bar_counts_a_continued_run_out_of_all_its_steps(tmp_path):
    from vscale.train.callbacks import StepProgressBar
    from vscale.train.cli import main

    common = [
        "fit",
        "--config",
        "configs/tiny.yaml",
        f"--run.root={tmp_path}",
        "--trainer.enable_model_summary=false",
        "--run.val_every_n_steps=1000",
        "--trainer.num_sanity_val_steps=0",
    ]
    main([*common, "--trainer.max_steps=4"])
    cli = main([*common, "--trainer.max_steps=6", "--ckpt_path=last"])
    bar = next(c for c in cli.trainer.callbacks if isinstance(c, StepProgressBar))
    assert (bar.train_batch_idx, bar.total_train_batches) == (6, 6)
