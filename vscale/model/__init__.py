"""The model stage: building a pre-norm RMSNorm causal LM (`build`), checking it and the
interventions asked of it once (`checks`), the registered attention pipeline (`pipeline`: tap,
V-scale, arm, kernel), installing the interventions (`install`; their math in `interventions/`,
every attention arm an `Arm`), saving and loading them with the weights (`pretrained`), the
causal rows' log-sum-exp (`lse`) and FSDP mixed precision that keeps V-scale in float32 (`fsdp`)."""

from vscale.model.build import build_config, build_model
from vscale.model.checks import SUPPORTED_MODEL_TYPES, check_asked, check_interventions, check_model
from vscale.model.install import (
    apply_attention,
    apply_interventions,
    apply_vscale,
    attention_arm,
    install,
    remove_interventions,
    vscale_modules,
)
from vscale.model.interventions import ARMS, Arm
from vscale.model.interventions.value_scale import MODES, VScale
from vscale.model.pipeline import decoder_layers, kernel_name
from vscale.model.pretrained import from_pretrained, save_pretrained

__all__ = [
    "ARMS",
    "MODES",
    "SUPPORTED_MODEL_TYPES",
    "Arm",
    "VScale",
    "apply_attention",
    "apply_interventions",
    "apply_vscale",
    "attention_arm",
    "build_config",
    "build_model",
    "check_asked",
    "check_interventions",
    "check_model",
    "decoder_layers",
    "from_pretrained",
    "install",
    "kernel_name",
    "remove_interventions",
    "save_pretrained",
    "vscale_modules",
]
