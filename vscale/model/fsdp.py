"""What FSDP needs to keep V-scale exact: theta (a per-head log-scale, and the fixed modes'
buffer) stays float32 when FSDP computes everything else in bf16 or fp16."""

import dataclasses

import torch
from torch.distributed.fsdp import MixedPrecision

from vscale.model.interventions.value_scale import VScale


def keep_vscale_float32(config: MixedPrecision) -> MixedPrecision:
    """`config` with V-scale's modules left out of the cast: FSDP wraps them as units of their own,
    in float32 (in bf16, theta would keep 3 significant digits and lambda = exp(theta) drift).
    Float32 configs are returned unchanged, so they add no FSDP units."""
    if config.param_dtype in (None, torch.float32):
        return config
    return dataclasses.replace(config, _module_classes_to_ignore=(*config._module_classes_to_ignore, VScale))
