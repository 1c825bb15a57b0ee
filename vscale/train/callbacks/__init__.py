"""Training callbacks, one per module: `Diagnostics` (every run, configured by its `diagnostics:` section),
`NonFiniteGuard` (in every config), and the ones every run gets from train.py: `RunCheckpoint`,
`Preemption`, `Throughput`, `StepProgressBar` and `RunModelSummary`."""

from vscale.train.callbacks.checkpoint import RunCheckpoint
from vscale.train.callbacks.diagnostics import Diagnostics
from vscale.train.callbacks.nonfinite import NonFiniteGuard, gradients_finite
from vscale.train.callbacks.preemption import Preemption
from vscale.train.callbacks.progress import StepProgressBar
from vscale.train.callbacks.summary import RunModelSummary
from vscale.train.callbacks.throughput import Throughput

__all__ = [
    "Diagnostics",
    "NonFiniteGuard",
    "Preemption",
    "RunCheckpoint",
    "RunModelSummary",
    "StepProgressBar",
    "Throughput",
    "gradients_finite",
]
