"""Training callbacks, one per module: `Diagnostics` (opt-in, in every config), `NonFiniteGuard` (in
every config), and the ones every run gets from train.py: `RunCheckpoint`, `Preemption`,
`Throughput` and `StepProgressBar`."""

from vscale.train.callbacks.checkpoint import RunCheckpoint
from vscale.train.callbacks.diagnostics import Diagnostics
from vscale.train.callbacks.nonfinite import NonFiniteGuard, gradients_finite
from vscale.train.callbacks.preemption import Preemption
from vscale.train.callbacks.progress import StepProgressBar
from vscale.train.callbacks.throughput import Throughput

__all__ = ["Diagnostics", "NonFiniteGuard", "Preemption", "RunCheckpoint", "StepProgressBar", "Throughput", "gradients_finite"]
