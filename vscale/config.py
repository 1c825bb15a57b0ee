"""Run-level configuration (where a run writes, how it logs) and the model/data checks that
must pass before any compute is spent."""

import netrc
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class RunConfig:
    """Where a run writes and how it reports.

    Args:
        root: Directory holding all experiments.
        experiment: Experiment name; also the wandb group, so a baseline/V-scale pair lands side by side.
        name: Run name; default `<vscale mode>-seed<seed>`. The run directory is root/experiment/name.
        ckpt_every: Save a periodic checkpoint every this many optimizer steps (plus `last.ckpt`).
        wandb: Log to Weights & Biases too (offline automatically without credentials).
        wandb_project: wandb project.
        wandb_entity: wandb entity (user or team); None uses your default.
        wandb_tags: Extra wandb tags; the mode and seed are always added.
    """

    root: str = "runs"
    experiment: str = "default"
    name: str | None = None
    ckpt_every: int = 1000
    wandb: bool = False
    wandb_project: str = "vscale"
    wandb_entity: str | None = None
    wandb_tags: list[str] = field(default_factory=list)

    def run_name(self, mode: str, seed: int) -> str:
        return self.name or f"{mode}-seed{seed}"

    def run_dir(self, mode: str, seed: int) -> Path:
        return Path(self.root) / self.experiment / self.run_name(mode, seed)


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
    from lightning.pytorch.utilities import rank_zero_only

    path = run_dir / "wandb_id"
    if path.is_file():
        return path.read_text().strip()
    run_id = uuid.uuid4().hex[:12]
    if rank_zero_only.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(run_id)
    return run_id


def check_model_fits_data(model, tokenizer, seq_len: int) -> None:
    """The tokenizer's ids must be valid embeddings and rows must fit the position range."""
    vocab, n_tokens = model.config.vocab_size, len(tokenizer)
    if n_tokens > vocab:
        raise ValueError(
            f"data.tokenizer has {n_tokens} tokens but the model's vocab_size is {vocab}: set "
            f"model.model_config.vocab_size >= {n_tokens}, or use the tokenizer the model was trained with."
        )
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_pos is not None and seq_len > max_pos:
        raise ValueError(
            f"data.seq_len={seq_len} exceeds the model's max_position_embeddings={max_pos}: lower data.seq_len "
            f"or raise model.model_config.max_position_embeddings."
        )
