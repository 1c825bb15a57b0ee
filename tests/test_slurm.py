"""On a real one-node Slurm (slurm/testing/cluster.sh): a launched job told to stop (USR1, as
`#SBATCH --signal=USR1@90` does) checkpoints, requeues, resumes and finishes with every step logged
once, its last checkpoint at the full step count; one that hits its time limit (SIGTERM) checkpoints,
requeues and resumes too. Skipped, with the reason, where Slurm cannot be installed or started (it
needs root)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import logged_steps, wait_until

REPO = Path(__file__).resolve().parents[1]
FAST = [
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.log_every_n_steps=1",
    "--run.val_every_n_steps=1000",
    "--trainer.limit_val_batches=2",
    "--trainer.num_sanity_val_steps=0",
]


@pytest.fixture(scope="module")
def slurm_env():
    was_up = subprocess.run(["sinfo"], capture_output=True).returncode == 0 if os.environ.get("SLURM_CONF") else False
    up = subprocess.run([REPO / "slurm/testing/cluster.sh", "up"], capture_output=True, text=True)
    if up.returncode != 0:
        pytest.skip(f"no local Slurm (slurm/testing/cluster.sh up exited {up.returncode}): {up.stderr.strip()[-300:]}")
    conf = up.stdout.strip().splitlines()[-1].removeprefix("SLURM_CONF=")
    env = {
        **os.environ,
        "SLURM_CONF": conf,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "OMP_NUM_THREADS": "1",
    }
    yield env
    if not was_up:
        subprocess.run([REPO / "slurm/testing/cluster.sh", "down"], check=True)


def launch(env, root, *overrides: str, options: tuple[str, ...] = ()) -> tuple[str, Path]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "vscale.launch",
            "--config",
            "configs/bb.yaml",  # a step a quarter of tiny's: the Slurm behaviour is the subject
            "--gpus-per-node",
            "0",
            "--modes",
            "off",
            "--seeds",
            "0",
            *options,
            "--",
            f"--run.root={root}",
            *FAST,
            *overrides,
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    job, run_dir = out.split()[-2:]
    return job, Path(run_dir)


def state(env, job: str) -> str:
    return subprocess.run(
        ["squeue", "-h", "-j", job, "-t", "all", "-o", "%T"], env=env, capture_output=True, text=True
    ).stdout.strip()


def scontrol(env, job: str, field: str) -> str:
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job], env=env, capture_output=True, text=True, check=True
    ).stdout
    return dict(f.split("=", 1) for f in out.split() if "=" in f)[field]


ENDED_BADLY = ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")


def wait(env, job: str, until, timeout=400.0, what="", failed=ENDED_BADLY) -> None:
    def alive():
        assert state(env, job) not in failed, state(env, job)

    wait_until(until, timeout, lambda: f"job {job}: {what} (state {state(env, job)})", alive=alive)


def assert_every_step_once(run_dir: Path, steps: int) -> None:
    assert logged_steps(run_dir) == list(range(steps)), "no lost or duplicated step"


def assert_requeued_resumed_and_finished(env, job: str, run_dir: Path, signal: str, steps: int) -> None:
    wait(env, job, lambda: scontrol(env, job, "Restarts") != "0", what="the requeue")
    wait(env, job, lambda: state(env, job) == "COMPLETED", what="COMPLETED after the requeue")
    log = next(run_dir.glob("slurm-*.out")).read_text()
    stopped = int(log.split(f"{signal}: stopped after optimizer step ")[1].split(",")[0])
    assert 0 < stopped < steps and f"Slurm job {job} requeued" in log
    assert f"Restoring states from the checkpoint path at {run_dir}/checkpoints/last.ckpt" in log
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == steps
    assert_every_step_once(run_dir, steps)


def test_usr1_to_the_whole_job_checkpoints_requeues_and_it_resumes_to_the_full_step_count(slurm_env, tmp_path):
    job, run_dir = launch(slurm_env, tmp_path, "--trainer.max_steps=60", "--run.ckpt_every=10")
    wait(slurm_env, job, lambda: (run_dir / "checkpoints" / "step0000010.ckpt").exists(), what="training under way")
    subprocess.run(["scancel", "--signal=USR1", "--full", job], env=slurm_env, check=True)  # tasks and batch shell
    assert_requeued_resumed_and_finished(slurm_env, job, run_dir, "SIGUSR1", 60)


def test_the_time_limit_sigterm_requeues_the_job_and_a_later_scancel_does_not(slurm_env, tmp_path):
    """Without a USR1 warning, the SIGTERM at the time limit still saves and requeues. The run is
    endless, so whatever the machine's speed the first part hits the limit; once the requeued
    part has resumed, `scancel` stops it with a checkpoint and no requeue."""
    template = tmp_path / "no-warning.sbatch"
    lines = (REPO / "slurm" / "cpu.sbatch").read_text().splitlines(keepends=True)
    template.write_text("".join(line for line in lines if "--signal" not in line))
    job, run_dir = launch(
        slurm_env,
        tmp_path,
        "--trainer.max_steps=100000",
        "--run.ckpt_every=100000",
        options=("--template", str(template), "--time", "1"),
    )
    log = lambda: next(run_dir.glob("slurm-*.out")).read_text() if list(run_dir.glob("slurm-*.out")) else ""
    wait(slurm_env, job, lambda: "Restored all states" in log(), what="the requeued job to resume")
    first = int(log().split("SIGTERM: stopped after optimizer step ")[1].split(",")[0])
    assert f"Slurm job {job} requeued" in log() and scontrol(slurm_env, job, "Restarts") == "1"
    assert f"Restoring states from the checkpoint path at {run_dir}/checkpoints/last.ckpt" in log()
    time.sleep(5)
    subprocess.run(["scancel", job], env=slurm_env, check=True)
    cancelled = [s for s in ENDED_BADLY if s != "CANCELLED"]
    wait(slurm_env, job, lambda: state(slurm_env, job) == "CANCELLED", timeout=120, what="CANCELLED", failed=cancelled)
    wait(
        slurm_env,
        job,
        lambda: log().count("SIGTERM: stopped after optimizer step ") == 2,
        timeout=60,
        what="the cancelled part's checkpoint",
        failed=cancelled,
    )
    second = int(log().split("SIGTERM: stopped after optimizer step ")[2].split(",")[0])
    assert first < second and "resume with the same command" in log().split("Restored all states")[1]
    assert scontrol(slurm_env, job, "Restarts") == "1", "scancel is respected: no second requeue"
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == second
    assert_every_step_once(run_dir, second)
