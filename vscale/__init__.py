"""vscale: train pre-norm RMSNorm transformers with or without V-scale, and watch their sinks.

The stages, one subpackage each: `model` (building, checks, the attention pipeline, the
interventions), `data`, `diagnostics` (method §3), `train` (the LightningModule, CLI and callbacks),
`eval` (the `eval.py` commands) and `launch` (Slurm sweeps)."""

from vscale.diagnostics import diagnose, diagnose_batches
from vscale.model import (
    ARMS,
    MODES,
    VScale,
    apply_attention,
    apply_interventions,
    apply_vscale,
    from_pretrained,
    save_pretrained,
)

__all__ = [
    "ARMS",
    "MODES",
    "VScale",
    "apply_attention",
    "apply_interventions",
    "apply_vscale",
    "diagnose",
    "diagnose_batches",
    "from_pretrained",
    "save_pretrained",
]
