"""SPEC §3 diagnostics measured on the training step itself, as an opt-in Lightning callback."""

from pathlib import Path

import lightning as L
import torch

from vscale.diagnostics import Probe, check_seq_len, flatten


class Diagnostics(L.Callback):
    """Every `every_n_steps` optimizer steps, hooks the first micro-batch's forward and backward
    (the ones that update the weights) and logs every SPEC §3 metric; other steps run no hook.

    Values are means over ranks (one all-reduce of the per-layer values before summarising),
    gradients refer to that micro-batch's mean loss (accumulation scaling undone), and the host
    syncs once per diagnostic step. After each validation a per-layer profile PNG is written to
    `<run dir>/diagnostics/` and logged to wandb when it is enabled.

    Args:
        every_n_steps: Interval in optimizer steps; 0 turns diagnostics off.
        profile_figure: Draw the per-layer profile after validation.
    """

    def __init__(self, every_n_steps: int = 10, profile_figure: bool = True):
        if every_n_steps < 0:
            raise ValueError(f"Diagnostics.every_n_steps={every_n_steps} must be >= 0 (0 turns diagnostics off).")
        self.every_n_steps = every_n_steps
        self.profile_figure = profile_figure
        self._probe: Probe | None = None
        self.last: dict[str, float] = {}
        self.last_step: int | None = None

    def should_log(self, trainer: L.Trainer, batch_idx: int) -> bool:
        return (
            self.every_n_steps > 0
            and trainer.global_step % self.every_n_steps == 0
            and batch_idx % trainer.accumulate_grad_batches == 0
        )

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.every_n_steps and trainer.datamodule is not None:
            check_seq_len(trainer.datamodule.hparams.seq_len, "data.seq_len")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.should_log(trainer, batch_idx):
            self._probe = Probe(pl_module.model).__enter__()

    def on_after_backward(self, trainer, pl_module) -> None:
        if self._probe is None:
            return
        probe, self._probe = self._probe, None
        probe.__exit__(None, None, None)
        per_layer = probe.per_layer(grad_scale=trainer.accumulate_grad_batches)
        names = list(per_layer)
        stacked = trainer.strategy.reduce(torch.stack([per_layer[n] for n in names]), reduce_op="mean")
        self.last = flatten(dict(zip(names, stacked)))
        self.last_step = trainer.global_step
        for logger in trainer.loggers:
            logger.log_metrics(self.last, step=trainer.global_step)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not (self.profile_figure and self.last and trainer.is_global_zero and not trainer.sanity_checking):
            return
        from vscale.plots import layer_profile

        path = Path(trainer.default_root_dir) / "diagnostics" / f"profile-step{self.last_step:07d}.png"
        layer_profile({"run": self.last}, path, title=f"step {self.last_step}")
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="diagnostics/profile", images=[str(path)], step=trainer.global_step)

    def state_dict(self) -> dict:
        return {"every_n_steps": self.every_n_steps}


def gradients_finite(optimizer: torch.optim.Optimizer) -> bool:
    """Whether every gradient the optimizer would apply is finite: one fused norm, one host sync."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    return bool(torch.isfinite(torch.stack(torch._foreach_norm(grads)).sum()))


class NonFiniteGuard(L.Callback):
    """Stops (or skips) a step whose loss or gradients are NaN/inf, instead of training on garbage.

    Checked on the gradients (a non-finite loss makes them non-finite too) before each optimizer
    step, with one fused norm and one host sync. `skip` drops the
    step's gradients, so AdamW leaves weights and moments untouched (the schedule still
    advances), at most `max_skips` times per run; then, or with `stop`, the run ends with the
    step and the last good checkpoint named.

    Args:
        action: stop or skip.
        max_skips: Skipped steps allowed before stopping (action skip).
    """

    def __init__(self, action: str = "stop", max_skips: int = 10):
        if action not in ("stop", "skip"):
            raise ValueError(f"NonFiniteGuard.action={action!r}: choose stop or skip.")
        self.action, self.max_skips, self.skipped = action, max_skips, 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if gradients_finite(optimizer):
            return
        step = trainer.global_step
        if self.action == "skip" and self.skipped < self.max_skips:
            self.skipped += 1
            optimizer.zero_grad(set_to_none=True)
            pl_module.log("train/skipped_steps", float(self.skipped))
            return
        last = trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback else ""
        raise FloatingPointError(
            f"non-finite loss or gradient at optimizer step {step} ({self.skipped} step(s) skipped before); "
            f"last good checkpoint: {last or 'none yet'}. Resume from it with a lower lr, or use NonFiniteGuard action=skip."
        )

    def state_dict(self) -> dict:
        return {"skipped": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        self.skipped = state["skipped"]
