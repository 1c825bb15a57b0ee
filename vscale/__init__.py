"""vscale: train pre-norm RMSNorm transformers with or without V-scale, and watch their sinks.

The stages, one subpackage each: `model` (building, checks, the attention pipeline, the
interventions), `data`, `diagnostics` (method §3), `train` (the LightningModule, CLI and callbacks),
`eval` (the `eval.py` commands) and `launch` (Slurm sweeps)."""

from vscale.lazy import exports

__getattr__, __all__ = exports(
    __name__,
    {
        "diagnostics": ["diagnose", "diagnose_batches"],
        "model": [
            "ARMS",
            "MODES",
            "VScale",
            "apply_attention",
            "apply_interventions",
            "apply_vscale",
            "from_pretrained",
            "save_pretrained",
        ],
    },
)
