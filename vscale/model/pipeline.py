"""The attention pipeline: every attention call of a patched model goes through one function
registered in transformers' attention-function registry, `vscale_<kernel>`, of four stages:

    diagnostics tap -> value-path intervention (V-scale) -> attention arm -> kernel

The tap (`module.diagnostics_tap`, set by `vscale.diagnostics.Probe` on measured steps only)
sees q, k, v and the arm; V-scale (`module.vscale`, a `VScale`) rescales the values; the arm
(`module.arm`, an `Arm` of `vscale.model.interventions.ARMS`; none installed means `softmax`) forms
the attention around the model's own kernel (`sdpa`, `eager`, ...). The kernel's mask function is
registered under the same name: transformers builds no mask for an unregistered name, which
would silently drop the causal and padding masks.
"""

import sys

from torch import nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from vscale.errors import ConfigError
from vscale.model.interventions import SOFTMAX

PREFIX = "vscale_"
TAP = "diagnostics_tap"


def decoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    return model.get_decoder().layers


def _kernel(module: nn.Module, base: str):
    """The kernel `base` as the model would call it; `eager` lives in the model's own file."""
    if base == "eager":
        return sys.modules[type(module).__module__].eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS[base]


def _register(base: str) -> str:
    """Register the pipeline `vscale_<base>` for attention and for mask creation; idempotent."""
    name = PREFIX + base
    if name in ALL_ATTENTION_FUNCTIONS._global_mapping:
        return name
    if base != "eager" and base not in ALL_ATTENTION_FUNCTIONS._global_mapping:
        raise ConfigError(f"attn_implementation={base!r} is not registered in transformers; use 'sdpa' or 'eager'.")

    def pipeline(module, query, key, value, attention_mask, **kwargs):
        arm = getattr(module, "arm", None) or SOFTMAX
        tap = getattr(module, TAP, None)
        if tap is not None:
            tap(arm, query, key, value, kwargs.get("scaling") or module.scaling)
        scaler = getattr(module, "vscale", None)
        if scaler is not None:
            value = scaler(value)
        return arm(module, query, key, value, attention_mask, _kernel(module, base), **kwargs)

    AttentionInterface.register(name, pipeline)
    AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[base])
    return name


def kernel_name(model: PreTrainedModel) -> str:
    """The model's own attention kernel (sdpa, eager, ...), whether or not it runs through the pipeline."""
    return model.config._attn_implementation.removeprefix(PREFIX)


def is_routed(model: PreTrainedModel) -> bool:
    return model.config._attn_implementation.startswith(PREFIX)


def route_through_pipeline(model: PreTrainedModel) -> None:
    """Switch the model to the registered pipeline around its own kernel; idempotent."""
    model.set_attn_implementation(_register(kernel_name(model)))


def unroute(model: PreTrainedModel) -> None:
    """Back to the model's own kernel, the pipeline bypassed."""
    model.set_attn_implementation(kernel_name(model))
