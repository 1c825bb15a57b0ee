"""DDP through Lightning: two gloo processes train like one process with the same global batch."""

import os
import subprocess
import sys

import pytest
from conftest import QUIET, metrics, train

STEPS = 10
ARGS = [
    f"--trainer.max_steps={STEPS}",
    "--trainer.log_every_n_steps=1",
    "--run.val_every_n_steps=1000",
    "--trainer.num_sanity_val_steps=0",
    "--model.vscale=learned",
]


def test_two_ddp_processes_give_the_single_process_loss_curve_and_one_wandb_run(tmp_path):
    """Each rank takes 8 of the step's 16 rows; the logged loss is the mean over ranks, and, with the step's 16 rows
    in two accumulated micro-batches of 8, over micro-batches (not the last micro-batch's)."""
    ddp = [
        sys.executable,
        "train.py",
        "fit",
        "--config",
        "configs/tiny.yaml",
        f"--run.root={tmp_path / 'ddp'}",
        *QUIET,
        *ARGS,
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
        "--data.batch_size=8",
        "--run.wandb=true",
    ]
    subprocess.run(
        ddp, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    )
    assert len(list((tmp_path / "ddp" / "tiny" / "learned-seed0" / "wandb").glob("offline-run-*"))) == 1
    train(tmp_path / "single", *ARGS, "--data.batch_size=16")
    train(tmp_path / "accumulated", *ARGS, "--data.batch_size=8", "--trainer.accumulate_grad_batches=2")
    two = metrics(tmp_path / "ddp" / "tiny" / "learned-seed0", "train/loss")
    one = metrics(tmp_path / "single" / "tiny" / "learned-seed0", "train/loss")
    accumulated = metrics(tmp_path / "accumulated" / "tiny" / "learned-seed0", "train/loss")
    assert sorted(two) == sorted(one) == sorted(accumulated) == list(range(STEPS))
    assert one[STEPS - 1] < one[0] - 0.3  # a curve, not a constant
    for step in range(STEPS):
        assert two[step] == pytest.approx(one[step], rel=1e-4), step
        assert accumulated[step] == pytest.approx(one[step], rel=1e-4), step
