"""The model stage: building a pre-norm RMSNorm causal LM (`build`), checking it and the
interventions asked of it once (`checks`), the registered attention pipeline (`pipeline`: tap,
V-scale, arm, kernel), installing the interventions (`install`; their math in `interventions/`,
every attention arm an `Arm`), saving and loading them with the weights (`pretrained`), the
causal rows' log-sum-exp (`lse`) and FSDP mixed precision that keeps V-scale in float32 (`fsdp`)."""

from vscale.lazy import exports

__getattr__, __all__ = exports(
    __name__,
    {
        "build": ["build_config", "build_model"],
        "checks": ["SUPPORTED_MODEL_TYPES", "check_asked", "check_interventions", "check_model"],
        "install": [
            "apply_attention",
            "apply_interventions",
            "apply_vscale",
            "attention_arm",
            "remove_interventions",
            "vscale_modules",
        ],
        "interventions": ["ARMS", "Arm"],
        "interventions.value_scale": ["MODES", "VScale"],
        "pipeline": ["decoder_layers", "kernel_name"],
        "pretrained": ["from_pretrained", "save_pretrained"],
    },
)
