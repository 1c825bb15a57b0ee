"""A run survives SIGTERM, SIGUSR1, kill -9 and a kill during a checkpoint write: the same command
with --ckpt_path=last continues, and every step's loss equals the uninterrupted run's. The run that is
stopped is a real process; the one that continues it runs in this worker (the same CLI and arguments,
without a second interpreter's start-up). The runs are configs/bb.yaml's (a step a quarter of tiny's), but for
the kill during a write, which needs tiny's larger checkpoint to be caught in the middle of it."""

import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import QUIET, logged_steps, metrics, train, wait_until

STEPS = 30
CONFIG, RUN = "configs/bb.yaml", ("bb", "off-seed2")
ARGS = [
    f"--trainer.max_steps={STEPS}",
    "--run.ckpt_every=5",
    "--trainer.log_every_n_steps=1",
    "--run.val_every_n_steps=1000",
]


def start(root, config: str = CONFIG, *extra: str) -> subprocess.Popen:
    """`train.py fit` as a real process, to be stopped."""
    command = ["train.py", "fit", "--config", config, f"--run.root={root}", "--ckpt_path=last", *QUIET]
    return subprocess.Popen(
        [sys.executable, *command, *ARGS, *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def resume(root, config: str = CONFIG, *extra: str) -> None:
    train(root, "--ckpt_path=last", *ARGS, *extra, config=config)


def wait_for(path, proc, timeout=300.0, poll=0.002):
    def alive():
        assert proc.poll() is None, proc.stdout.read()

    wait_until(path.exists, timeout, str(path), poll, alive)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    root = tmp_path_factory.mktemp("straight")
    train(root, *ARGS, config=CONFIG)
    return metrics(root.joinpath(*RUN), "train/loss")


def assert_continues_exactly(root, straight):
    assert logged_steps(root.joinpath(*RUN)) == list(range(STEPS)), "every step logged once"
    resumed = metrics(root.joinpath(*RUN), "train/loss")
    for step in range(STEPS):
        assert resumed[step] == pytest.approx(straight[step], rel=1e-6, abs=1e-6), step


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_a_signal_finishes_the_step_saves_and_exits_then_the_run_continues_exactly(tmp_path, straight, signum):
    ckpts = tmp_path.joinpath(*RUN, "checkpoints")
    proc = start(tmp_path)
    wait_for(ckpts / "step0000005.ckpt", proc)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signum, out
    stopped = torch.load(ckpts / "last.ckpt", weights_only=False)["global_step"]
    assert 5 <= stopped < STEPS and f"stopped after optimizer step {stopped}" in out
    resume(tmp_path)
    assert_continues_exactly(tmp_path, straight)


def test_kill_9_at_a_random_step_then_the_same_command_continues_exactly(tmp_path, straight):
    seed = random.randrange(1000)
    print(f"kill delay seed {seed}")
    proc = start(tmp_path)
    wait_for(tmp_path.joinpath(*RUN, "checkpoints", "step0000005.ckpt"), proc)
    time.sleep(random.Random(seed).uniform(0.0, 1.0))
    proc.kill()
    assert proc.wait() == -signal.SIGKILL, "killed before its last step"
    resume(tmp_path)
    assert_continues_exactly(tmp_path, straight)


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_checkpoint_usable(tmp_path):
    ckpts, tiny = tmp_path / "tiny" / "off-seed0" / "checkpoints", ("configs/tiny.yaml", "--trainer.max_steps=20")
    proc = start(tmp_path, *tiny)
    wait_for(ckpts / "last.ckpt", proc)
    wait_for(ckpts / ".last.ckpt.partial", proc, timeout=60, poll=0.0002)
    proc.kill()
    proc.wait()
    assert (ckpts / ".last.ckpt.partial").exists(), "killed in the middle of writing last.ckpt"
    assert torch.load(ckpts / "last.ckpt", weights_only=False)["global_step"] in range(5, 20, 5)
    resume(tmp_path, *tiny)
    assert torch.load(ckpts / "last.ckpt", weights_only=False)["global_step"] == 20
