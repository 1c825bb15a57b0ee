"""Reproducible CPU runs (issue 20): a run pinned to AVX2 kernels (`run.cpu_capability: avx2`, as in every CPU
config) logs the same numbers whatever the machine's own dispatch, the thread count or the process (a train.py
subprocess or a pytest-xdist worker); unpinned, the dispatch changes them. Legs the CPU cannot run (AVX512 kernels
on an AVX2-only CPU) are skipped. The runs are configs/bb.yaml's first 10 steps, a diagnostic step among them:
numbers that agree bit for bit on every operation stay equal however long the run."""

import csv
import os
import subprocess
import sys

import pytest
import torch
from conftest import PINNED_CPU, QUIET, train

from vscale.errors import UserError
from vscale.train import cpu

STEPS = ["--trainer.max_steps=10", "--trainer.log_every_n_steps=1", "--run.val_every_n_steps=10", "--run.ckpt_every=10"]
TIMING = ("per_sec", "/time", "mfu")  # wall-clock columns (train/time, validate/time), which no two runs share
AVX512 = cpu.runs_on_this_cpu("avx512")


def numbers(run_dir) -> dict[tuple[str, str], str]:
    """Every logged number of a run, by (step, column), as written (no rounding), timing aside."""
    with open(run_dir / "metrics.csv") as f:
        return {
            (r["step"], k): v for r in csv.DictReader(f) for k, v in r.items() if v and not any(t in k for t in TIMING)
        }


def train_subprocess(tmp_path, name: str, env: dict, *overrides: str):
    """`python train.py fit --config configs/bb.yaml` in a fresh process whose own CPU dispatch is `env`'s."""
    clean = {k: v for k, v in os.environ.items() if k not in PINNED_CPU and k != "OMP_NUM_THREADS"}
    subprocess.run(
        [
            sys.executable,
            "train.py",
            "fit",
            "--config",
            "configs/bb.yaml",
            f"--run.root={tmp_path}",
            f"--run.name={name}",
            *QUIET,
            *STEPS,
            *overrides,
        ],
        env={**clean, **env},
        check=True,
        capture_output=True,
        text=True,
    )
    return tmp_path / "bb" / name


def test_the_tests_compute_with_the_pinned_avx2_kernels():
    assert PINNED_CPU == cpu.environment("avx2")
    assert cpu.dispatched() == "avx2"


def test_a_pinned_run_logs_the_same_numbers_under_any_dispatch_thread_count_and_process(tmp_path):
    legs = {
        "default kernels": {"ATEN_CPU_CAPABILITY": "default"},
        # started pinned, so that only the first leg pays train.py's restart (a second ~12 s of imports); one
        # thread is this worker's (conftest)
        "two threads": {**PINNED_CPU, "OMP_NUM_THREADS": "2"},
        **({"avx512 kernels": {"ATEN_CPU_CAPABILITY": "avx512"}} if AVX512 else {}),
    }
    runs = {leg: numbers(train_subprocess(tmp_path, leg.replace(" ", "-"), env)) for leg, env in legs.items()}
    assert torch.get_num_threads() == 1, "the one-thread leg is this worker's run"
    train(tmp_path / "worker", *STEPS, "--run.name=worker", config="configs/bb.yaml")  # this worker, pinned by conftest
    runs["this pytest worker"] = numbers(tmp_path / "worker" / "bb" / "worker")
    reference = runs["default kernels"]
    assert len(reference) > 300 and ("9", "gsink/ratio/layer_0") in reference
    for leg, logged in runs.items():
        assert logged == reference, f"{leg} differs from the run that started on default kernels"


def test_unpinned_runs_depend_on_the_kernels_dispatched(tmp_path):
    """The control: the comparison above can fail, since the dispatch does change the numbers (a run on default
    kernels against this worker's AVX2 ones, both unpinned, over the same 10 steps)."""
    unpinned = "--run.cpu_capability=null"
    a = numbers(train_subprocess(tmp_path, "default", {"ATEN_CPU_CAPABILITY": "default"}, unpinned))
    train(tmp_path / "worker", *STEPS, unpinned, "--run.name=avx2", config="configs/bb.yaml")
    b = numbers(tmp_path / "worker" / "bb" / "avx2")
    assert a.keys() == b.keys() and a != b


@pytest.mark.skipif(AVX512, reason="this CPU runs AVX512 kernels")
def test_kernels_the_cpu_cannot_run_are_refused_naming_those_it_can():
    with pytest.raises(
        UserError,
        match=r"^run.cpu_capability=avx512: this CPU cannot run avx512 kernels; use default or avx2, or null.$",
    ):
        cpu.pin("avx512", may_restart=True)


def test_an_in_process_run_without_the_pinned_environment_is_refused_with_the_variables_to_set(monkeypatch):
    monkeypatch.setenv("MKL_CBWR", "AUTO")
    with pytest.raises(
        UserError, match=r"run.cpu_capability=avx2: set ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2 ONEDNN_MAX_CPU_ISA=AVX2"
    ):
        cpu.pin("avx2", may_restart=False)


def test_an_unknown_capability_names_the_choices():
    with pytest.raises(UserError, match=r"run.cpu_capability='avx3': choose one of default, avx2, avx512"):
        cpu.pin("avx3", may_restart=False)


def test_the_run_records_what_decides_its_numbers(tmp_path):
    cli = train(tmp_path, "--trainer.max_steps=2", "--run.val_every_n_steps=2")
    logged = (tmp_path / "tiny" / "off-seed0" / "hparams.yaml").read_text()
    for key, value in (
        ("env/cpu_capability", "avx2"),
        ("env/torch", str(torch.__version__)),
        ("env/threads", str(torch.get_num_threads())),
        ("env/MKL_CBWR", "AVX2"),
    ):
        assert f"{key}: {value}" in logged
    assert cli.trainer.global_step == 2
