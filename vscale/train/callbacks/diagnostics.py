"""The diagnostics of method §3 (docs/method.md), measured on the training step itself."""

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from vscale.diagnostics import Pooled, Probe, check_seq_len, flatten
from vscale.diagnostics.figures import layer_profile
from vscale.errors import ConfigError


class Diagnostics(L.Callback):
    """Every `every_n_steps` optimizer steps, hooks the forward and backward of every micro-batch
    of the step (the ones that update the weights) and logs every method §3 metric; other steps
    run no hook. The measured steps are those Lightning logs `train/loss` on (steps s with s + 1
    divisible by the interval), so each diagnostic row of metrics.csv carries that step's loss.

    Per-token quantities are summed over the rows of all micro-batches and ranks before any
    ratio, threshold or median is taken (`vscale.diagnostics.Pooled`; one sum over ranks), so a
    value is the global batch's, not a mean of per-rank ratios. Gradients refer to each
    micro-batch's mean loss (accumulation scaling undone). The host syncs once per diagnostic
    step. After each validation a per-layer profile PNG is written to `<run dir>/diagnostics/`
    and logged to wandb when it is enabled. At the end of fit the console shows the layer with the
    strongest sink at the last diagnostic step, so a run's outcome is readable without a plot.

    Args:
        every_n_steps: Interval in optimizer steps, a multiple of trainer.log_every_n_steps; 0 turns diagnostics off.
        profile_figure: Draw the per-layer profile after validation.
    """

    def __init__(self, every_n_steps: int = 10, profile_figure: bool = True):
        if every_n_steps < 0:
            raise ConfigError(f"diagnostics.every_n_steps={every_n_steps} must be >= 0 (0 turns diagnostics off).")
        self.every_n_steps = every_n_steps
        self.profile_figure = profile_figure
        self._probe: Probe | None = None
        self._pooled = Pooled()
        self._last_micro_batch = False
        self.last: dict[str, float] = {}
        self.last_step: int | None = None

    def should_log(self, trainer: L.Trainer) -> bool:
        return self.every_n_steps > 0 and (trainer.global_step + 1) % self.every_n_steps == 0

    def setup(self, trainer, pl_module, stage: str) -> None:
        if not self.every_n_steps:
            return
        log_every = trainer.log_every_n_steps
        if trainer.loggers and log_every and self.every_n_steps % log_every:
            raise ConfigError(
                f"diagnostics.every_n_steps={self.every_n_steps} is not a multiple of "
                f"trainer.log_every_n_steps={log_every}: diagnostic rows would fall on steps without a train/loss row; "
                f"use a multiple of {log_every}."
            )
        if trainer.datamodule is not None:
            check_seq_len(trainer.datamodule.seq_len, "data.seq_len")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.should_log(trainer):
            self._probe = Probe(pl_module.model).__enter__()
            self._last_micro_batch = (batch_idx + 1) % trainer.accumulate_grad_batches == 0

    def on_after_backward(self, trainer, pl_module) -> None:
        if self._probe is None:
            return
        probe, self._probe = self._probe, None
        probe.__exit__(None, None, None)
        self._pooled.update(probe.sums(grad_scale=trainer.accumulate_grad_batches))
        if not self._last_micro_batch:
            return
        self.last = flatten(self._pooled.compute())
        self._pooled.reset()
        self.last_step = trainer.global_step
        for logger in trainer.loggers:
            logger.log_metrics(self.last, step=trainer.global_step)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not (self.profile_figure and self.last and trainer.is_global_zero and not trainer.sanity_checking):
            return
        run_dir = Path(trainer.default_root_dir)
        path = run_dir / "diagnostics" / f"profile-step{self.last_step:07d}.png"
        layer_profile({f"{run_dir.parent.name}/{run_dir.name}": self.last}, path, title=f"step {self.last_step}")
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="diagnostics/profile", images=[str(path)], step=trainer.global_step)

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.last:
            rank_zero_info(summary(self.last, self.last_step))


def summary(metrics: dict[str, float], step: int) -> str:
    """One line: the layer with the largest token-0 attention alpha, with its sink rate, R_GS and
    token-0 value ratio (the three faces of the sink, method §3)."""
    layers = sorted(int(k.rsplit("_", 1)[1]) for k in metrics if k.startswith("sink/alpha/layer_"))
    l = max(layers, key=lambda i: metrics[f"sink/alpha/layer_{i}"])
    at = {name: metrics[f"{name}/layer_{l}"] for name in ("sink/alpha", "sink/rate", "gsink/ratio", "act/v_ratio")}
    return (
        f"diagnostics at step {step}, layer {l} (largest alpha): attention to token 0 alpha {at['sink/alpha']:.3g}, "
        f"sink rate {at['sink/rate']:.3g}, gradient sink R_GS {at['gsink/ratio']:.3g}, token-0 value ratio "
        f"{at['act/v_ratio']:.3g} (every layer: metrics.csv)"
    )
