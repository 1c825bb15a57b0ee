"""vscale: train pre-norm RMSNorm transformers with or without V-scale, and watch their sinks."""

from vscale.diagnostics import diagnose
from vscale.hf import VScale, apply_vscale, from_pretrained, save_pretrained
from vscale.value_scale import MODES

__all__ = ["MODES", "VScale", "apply_vscale", "diagnose", "from_pretrained", "save_pretrained"]
