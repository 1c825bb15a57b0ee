"""The `run:` section of a train.py config: where a run writes and how it reports. train.py parses it,
the launcher reads it to name each job's run directory before submitting."""

import netrc
import os
from dataclasses import dataclass, field

from vscale.runs.identity import RunId, run_name


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
        cpu_capability: CPU kernels to compute with: avx2 (runs on any x86-64 CPU since 2013, so a CPU run gives the
            same numbers on every x86 machine), avx512, default (unvectorised), or None for the machine's best (numbers
            then differ between machines). Pins ATen's, MKL's and oneDNN's dispatch before torch computes anything
            (train.py restarts itself with ATEN_CPU_CAPABILITY, MKL_CBWR and ONEDNN_MAX_CPU_ISA set); the run's hparams
            record it.
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

    def identity(self, mode: str, seed: int, attention: str = "softmax") -> RunId:
        """The run of this section that trains `mode` with `seed` and `attention`: `name`, or the default name."""
        return RunId(self.root, self.experiment, self.name or run_name(mode, seed, attention), mode, seed, attention)


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
