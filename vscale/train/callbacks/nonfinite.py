"""Stop (or skip) a step whose loss or gradients are NaN/inf, instead of training on garbage."""

import lightning as L
import torch

from vscale.errors import ConfigError


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
            raise ConfigError(f"NonFiniteGuard.action={action!r}: choose stop or skip.")
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
            f"last good checkpoint: {last or 'none yet'}. "
            "Resume from it with a lower lr, or use NonFiniteGuard action=skip."
        )

    def state_dict(self) -> dict:
        return {"skipped": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        self.skipped = state["skipped"]
