"""What a user sees on the terminal: no notices they cannot act on, a step-counting progress bar,
and one line (no traceback) when a hub name cannot be fetched."""

import os
import subprocess
import sys

import pytest

UNACTIONABLE = [
    "LeafSpec",
    "litlogger",
    "The `srun` command is available",
    "`weights_only` was not set",
    "wandb.require('service')",
    "anonymous setting",
    "Epoch 0/-2",
]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600
    )


@pytest.fixture(scope="module")
def train_and_resume(tmp_path_factory) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """Two steps of train.py as a user starts it (model summary and progress bar on, wandb offline) where `srun` is
    on the PATH (a Slurm login node, which makes Lightning suggest it), then its resume to step 3."""
    tmp_path = tmp_path_factory.mktemp("train-and-resume")
    srun = tmp_path / "bin" / "srun"
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\nexit 1\n")
    srun.chmod(0o755)
    env = {"PATH": f"{srun.parent}:{os.environ['PATH']}", "WANDB_MODE": "offline"}
    common = [
        "train.py",
        "fit",
        "--config",
        "configs/tiny.yaml",
        f"--run.root={tmp_path}",
        "--run.wandb=true",
        "--run.val_every_n_steps=1000",
    ]
    first = run(*common, "--trainer.max_steps=2", env=env)
    assert first.returncode == 0, first.stderr
    return first, run(*common, "--trainer.max_steps=3", "--ckpt_path=last", env=env)


def test_training_and_resuming_print_no_notice_the_user_cannot_act_on(train_and_resume):
    """wandb and a resume add notices of their own to Lightning's."""
    for done in train_and_resume:
        assert done.returncode == 0, done.stderr
        printed = done.stdout + done.stderr
        assert [n for n in UNACTIONABLE if n in printed] == []
    assert "train (max_steps 3)" in train_and_resume[1].stdout + train_and_resume[1].stderr


@pytest.mark.parametrize(
    "command",
    [
        [
            "train.py",
            "fit",
            "--config",
            "configs/tiny.yaml",
            "--model.model_config=null",
            "--model.pretrained=vscale-test/absent",
        ],
        ["eval.py", "profile", "--model", "vscale-test/absent", "--files", "[data/tiny/val.jsonl]"],
    ],
    ids=["train", "profile"],
)
def test_an_unreachable_hub_name_ends_the_program_in_one_line(command, tmp_path):
    done = run(
        *command,
        f"--run.root={tmp_path}" if command[0] == "train.py" else f"--out={tmp_path}",
        env={"HF_HUB_OFFLINE": "1"},
    )
    field = "model.pretrained" if command[0] == "train.py" else "--model"
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: {field}='vscale-test/absent': the Hugging Face hub could not be reached")
    )


def fit_once(tmp_path, *overrides: str) -> str:
    """What one step of train.py prints, stdout and stderr together."""
    done = run(
        "train.py",
        "fit",
        "--config",
        "configs/tiny.yaml",
        f"--run.root={tmp_path}",
        "--trainer.max_steps=1",
        "--run.val_every_n_steps=1000",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.enable_progress_bar=false",
        *overrides,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


@pytest.fixture(scope="module", params=[True, False], ids=["summary", "no-summary"])
def one_step(request, tmp_path_factory) -> tuple[bool, str]:
    """What train.py printed with the model summary on (the default: the first run of `train_and_resume`) or off."""
    if request.param:
        first = request.getfixturevalue("train_and_resume")[0]
        return True, first.stdout + first.stderr
    return False, fit_once(tmp_path_factory.mktemp("one-step"), "--trainer.enable_model_summary=false")


def test_a_run_does_not_say_that_lightning_skips_its_default_model_summary(one_step):
    """The project prints its own summary (RunModelSummary): Lightning's note that it adds none is noise."""
    assert "Skipping setting a default `ModelSummary` callback" not in one_step[1]


def test_the_model_summary_is_printed_only_when_enabled(one_step):
    enabled, printed = one_step
    assert ("Total FLOPs" in printed) == enabled and ("Trainable params" in printed) == enabled
