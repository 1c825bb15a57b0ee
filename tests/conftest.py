import os
import time

os.environ.setdefault(
    "OMP_NUM_THREADS", "1"
)  # one torch thread per test worker (pytest -n auto), subprocesses included
# The CPU kernels of run.cpu_capability: avx2 (vscale.train.cpu.environment), set before torch initialises, so that
# tests compute the same numbers on every x86 machine and in-process runs of the CPU configs need no restart.
PINNED_CPU = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
os.environ.update(PINNED_CPU)

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

LONGEST_FIRST = (
    "test_slurm.py",
    "test_eval.py",
    "test_diagnostics_training.py",
    "test_training.py",
    "test_resilience.py",
    "test_console.py",
    "test_reproducibility.py",
    "test_gpu_check.py",
    "test_speed_options.py",
    "test_finetune.py",
    "test_interventions.py",
    "test_distributed.py",
    "test_one_line_errors.py",
    "test_prepare.py",
)
"""The test files that take longest (wall in a full run on the 2-core machine, BENCHMARKS.md), longest first."""


def pytest_collection_modifyitems(items):
    """pytest-xdist (`--dist loadfile --no-loadscope-reorder`) hands out the files in this order: the longest first,
    the rest as collected, so that the two workers finish together."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


ARCHS = ["llama", "qwen3"]
HEADS = {"mha": 4, "gqa": 2}


def tiny_model(arch: str = "llama", kv_heads: int = 2, attn: str = "sdpa", dtype=torch.float32, seed: int = 0):
    """A random 2-layer model of the given architecture; 4 query heads of dim 16."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    config = AutoConfig.for_model(
        arch,
        vocab_size=97,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        head_dim=16,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    return AutoModelForCausalLM.from_config(config, attn_implementation=attn, dtype=dtype)


@pytest.fixture(params=[(a, h) for a in ARCHS for h in HEADS], ids=lambda p: f"{p[0]}-{p[1]}")
def arch_heads(request):
    arch, heads = request.param
    return arch, HEADS[heads]


def wait_until(done, timeout: float, what, poll: float = 0.5, alive=lambda: None) -> None:
    """Poll `done()` until it holds, for at most `timeout` seconds; `alive()` runs each round and fails the wait
    early (a process that died, a job that ended badly) rather than after the whole timeout. `what` names the wait
    in the timeout's message (a callable is read then, e.g. a job's state at that moment)."""
    deadline = time.monotonic() + timeout
    while not done():
        alive()
        assert time.monotonic() < deadline, (
            f"timed out after {timeout:.0f} s waiting for {what() if callable(what) else what}"
        )
        time.sleep(poll)


def printed_help(main, args: list[str], capsys) -> str:
    """What an entry point's `main(args)` prints for --help, in this process (a fresh one spends ~12 s importing)."""
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 0
    return capsys.readouterr().out


QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def train(tmp_path, *overrides: str, config: str = "configs/tiny.yaml"):
    """Run `train.py fit` in-process on the real CLI and Trainer; returns the CLI."""
    from vscale.train.cli import main

    return main(["fit", "--config", config, f"--run.root={tmp_path}", *QUIET, *overrides])


def tiny_config() -> dict:
    import yaml

    with open("configs/tiny.yaml") as f:
        return yaml.safe_load(f)


def write_config(tmp_path, config: dict) -> str:
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def metrics(run_dir, column: str) -> dict[int, float]:
    """step -> value of one column of a run's metrics.csv (the last row wins for a repeated step)."""
    import csv

    with open(run_dir / "metrics.csv") as f:
        return {int(r["step"]): float(r[column]) for r in csv.DictReader(f) if r.get(column)}


def logged_steps(run_dir, column: str = "train/loss") -> list[int]:
    """The steps of a run's metrics.csv rows that have `column`, in file order (repeats kept)."""
    import csv

    with open(run_dir / "metrics.csv") as f:
        return [int(r["step"]) for r in csv.DictReader(f) if r.get(column)]


def save_tiny_pretrained(path, arch: str = "llama", seed: int = 0, max_positions: int = 256):
    """A random 2-layer model (4 query heads, 2 kv heads) saved with save_pretrained beside the
    shipped tokenizer (vocab 4096): a stand-in for a pretrained checkpoint, offline."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    config = AutoConfig.for_model(
        arch,
        vocab_size=4096,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
    )
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    AutoTokenizer.from_pretrained("assets/tokenizer-tiny").save_pretrained(path)
    return path
