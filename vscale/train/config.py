"""Run-level configuration (where a run writes, how it logs) and the model/data checks that
must pass before any compute is spent."""

import netrc
import os
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only

from vscale.errors import ConfigError, DamagedCheckpoint, RunDirInUse


@dataclass
class RunConfig:
    """Where a run writes and how it reports.

    Args:
        root: Directory holding all experiments.
        experiment: Experiment name; also the wandb group, so a baseline/V-scale pair lands side by side.
        name: Run name; default `<vscale mode>-seed<seed>`, `<attention>-<vscale mode>-seed<seed>` for an attention arm
            other than softmax. The run directory is root/experiment/name.
        ckpt_every: Save a periodic checkpoint every this many optimizer steps (plus `last.ckpt`).
        val_every_n_steps: Validate every this many optimizer steps, whatever the gradient accumulation (Lightning's
            trainer.val_check_interval counts micro-batches instead; give only one of the two).
        wandb: Log to Weights & Biases too (offline automatically without credentials).
        wandb_project: wandb project.
        wandb_entity: wandb entity (user or team); None uses your default.
        wandb_tags: Extra wandb tags; the mode and seed are always added.
        cpu_capability: CPU kernels to compute with: avx2 (runs on any x86-64 CPU since 2013, so a CPU run gives the same
            numbers on every x86 machine), avx512, default (unvectorised), or None for the machine's best (numbers then
            differ between machines). Pins ATen's, MKL's and oneDNN's dispatch before torch computes anything (train.py
            restarts itself with ATEN_CPU_CAPABILITY, MKL_CBWR and ONEDNN_MAX_CPU_ISA set); the run's hparams record it.
    """

    root: str = "runs"
    experiment: str = "default"
    name: str | None = None
    ckpt_every: int = 1000
    val_every_n_steps: int | None = None
    wandb: bool = False
    wandb_project: str = "vscale"
    wandb_entity: str | None = None
    wandb_tags: list[str] = field(default_factory=list)
    cpu_capability: str | None = None

    def run_name(self, mode: str, seed: int, attention: str = "softmax") -> str:
        """`<mode>-seed<seed>`, prefixed by the attention arm when it is not the model's own softmax."""
        arm = "" if attention == "softmax" else f"{attention}-"
        return self.name or f"{arm}{mode}-seed{seed}"

    def run_dir(self, mode: str, seed: int, attention: str = "softmax") -> Path:
        return Path(self.root) / self.experiment / self.run_name(mode, seed, attention)


def wandb_offline() -> bool:
    """Offline unless wandb credentials exist (WANDB_API_KEY or a netrc entry) and WANDB_MODE allows it."""
    if os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        return True
    if os.environ.get("WANDB_API_KEY"):
        return False
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is None
    except (FileNotFoundError, netrc.NetrcParseError):
        return True


def wandb_run_id(run_dir: Path) -> str:
    """The run's wandb id, kept in the run directory so a restarted or requeued run logs into
    the same wandb run; created by rank 0 on first use."""
    path = run_dir / "wandb_id"
    if path.is_file():
        return path.read_text().strip()
    run_id = uuid.uuid4().hex[:12]
    if rank_zero_only.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(run_id)
    return run_id


def accumulation(global_batch: int | None, batch_size: int, world_size: int, given: int) -> int:
    """trainer.accumulate_grad_batches for `data.global_batch` rows per optimizer step over
    `world_size` devices; `given` (the trainer's own setting) when no global batch is set."""
    if global_batch is None:
        return given
    per_pass = batch_size * world_size
    if global_batch % per_pass:
        raise ConfigError(
            f"data.global_batch={global_batch} is not divisible by data.batch_size={batch_size} x {world_size} device(s) "
            f"= {per_pass} rows per pass: choose a device count or data.batch_size that divides it."
        )
    derived = global_batch // per_pass
    if given not in (1, derived):
        raise ConfigError(
            f"trainer.accumulate_grad_batches={given} disagrees with data.global_batch={global_batch}, which gives "
            f"{derived} on {world_size} device(s) with data.batch_size={batch_size}: set only data.global_batch."
        )
    return derived


def val_check_interval(val_every_n_steps: int | None, accumulate: int, given) -> int | float | None:
    """trainer.val_check_interval (micro-batches) for validation every `val_every_n_steps` optimizer steps."""
    if val_every_n_steps is None:
        return given
    if given is not None:
        raise ConfigError(
            f"run.val_every_n_steps={val_every_n_steps} and trainer.val_check_interval={given} both set when to validate: "
            "give only run.val_every_n_steps (optimizer steps, independent of the device count)."
        )
    if val_every_n_steps < 1:
        raise ConfigError(f"run.val_every_n_steps={val_every_n_steps} must be at least 1.")
    return val_every_n_steps * accumulate


def check_run_dir(run_dir: Path, ckpt_path: str | None) -> str | None:
    """The checkpoint a run starts from. A run directory that holds checkpoints is continued (`--ckpt_path
    last`) or left alone, never trained over from scratch (which mixes two runs' metrics and checkpoints);
    `last` in a directory without checkpoints is a first run (None); a damaged checkpoint is refused,
    naming the newest one that is whole."""
    found = sorted((run_dir / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if ckpt_path is None and found:
        raise RunDirInUse(
            f"run directory {run_dir} already holds checkpoints ({', '.join(p.name for p in found[-3:])}); "
            f"continue it with --ckpt_path last (raise trainer.max_steps to extend a finished run), or start "
            f"another with --run.name=<new name> or --run.experiment=<new experiment>."
        )
    if ckpt_path == "last" and not found:
        return None
    path = run_dir / "checkpoints" / "last.ckpt" if ckpt_path == "last" else Path(ckpt_path) if ckpt_path else None
    if path is not None and path.is_file() and not whole(path):
        good = next((p for p in reversed(found) if p != path and whole(p)), None)
        fix = f"resume from the newest whole one with --ckpt_path {good}" if good else "no other checkpoint there is whole: start afresh with --run.name=<new name>"
        raise DamagedCheckpoint(f"--ckpt_path {ckpt_path}: {path} is damaged (cut short or overwritten, not a whole checkpoint); {fix}.")
    return ckpt_path


def whole(path: Path) -> bool:
    """Whether a checkpoint file is complete: torch.save writes a zip archive, whose directory is at its end."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
