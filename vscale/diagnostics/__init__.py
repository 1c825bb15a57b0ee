"""The diagnostics stage (method §3): the formulas (`metrics`), the hooks that capture their
inputs from a live step (`probe`), pooling over rows, micro-batches and ranks (`pooling`),
diagnosing a model outside training (`measure`) and the per-layer profile figure (`figures`)."""

from vscale.diagnostics.measure import HEAD_METRICS, check_seq_len, diagnose, diagnose_batches
from vscale.diagnostics.pooling import Pooled, flatten
from vscale.diagnostics.probe import Probe

__all__ = ["HEAD_METRICS", "Pooled", "Probe", "check_seq_len", "diagnose", "diagnose_batches", "flatten"]
