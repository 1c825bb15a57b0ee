"""Interventions inside Hugging Face causal LMs, through the attention-function registry.

Every attention call of a patched model goes through one registered function, `vscale_<kernel>`,
a pipeline of four stages:

    diagnostics tap -> value-path intervention (V-scale) -> attention arm -> kernel

The tap (`module.diagnostics_tap`, set by `vscale.diagnostics.Probe` on measured steps only)
sees q, k, v and the arm; V-scale (`module.vscale`, a `VScale`) rescales the values; the arm
(`module.arm`, one of `vscale.interventions.ARMS`; none installed means `softmax`) forms the
attention around the model's own kernel (`sdpa`, `eager`, ...). The kernel's mask function is
registered under the same name: transformers builds no mask for an unregistered name, which
would silently drop the causal and padding masks.
"""

import sys

import torch
from torch import nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from vscale.interventions import ARMS, SOFTMAX, check_attention
from vscale.interventions.value_scale import SIGMA, VScale, check_mode

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
PREFIX = "vscale_"
TAP = "diagnostics_tap"


def check_model(config, who: str = "the model", tokenizer=None, tokenizer_field: str = "data.tokenizer",
                lengths: dict[str, int] | None = None) -> None:
    """Everything a model must be here, checked before any compute: a pre-norm RMSNorm decoder
    (method §1), a vocabulary holding every id of the tokenizer used with it, and positions for
    every length asked (`lengths`: field -> tokens). `who` names the model in the messages."""
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"{who} must be a pre-norm RMSNorm decoder ({', '.join(SUPPORTED_MODEL_TYPES)}); got model_type={model_type!r}. "
            f"Build it from a LlamaConfig, Qwen2Config, Qwen3Config or MistralConfig, or load such a checkpoint."
        )
    if tokenizer is not None and len(tokenizer) > config.vocab_size:
        raise ValueError(
            f"{tokenizer_field} has {len(tokenizer)} tokens but {who}'s vocab_size is {config.vocab_size}: use the tokenizer "
            f"{who} was trained with, or, for a new model, set model.model_config.vocab_size >= {len(tokenizer)}."
        )
    max_pos = getattr(config, "max_position_embeddings", None)
    for field, length in (lengths or {}).items():
        if max_pos is not None and length > max_pos:
            raise ValueError(
                f"{field}={length} exceeds {who}'s max_position_embeddings={max_pos}: lower {field}, or, for a new model, "
                f"raise model.model_config.max_position_embeddings."
            )


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
        raise ValueError(f"attn_implementation={base!r} is not registered in transformers; use 'sdpa' or 'eager'.")

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
    return model.config._attn_implementation.removeprefix(PREFIX)


def route_through_pipeline(model: PreTrainedModel) -> None:
    """Switch the model to the registered pipeline around its own kernel; idempotent."""
    model.set_attn_implementation(_register(kernel_name(model)))


def apply_vscale(model: PreTrainedModel, mode: str = "learned", lam: float = 1.0, sigma: float = SIGMA) -> PreTrainedModel:
    """Install V-scale in place on a Llama/Mistral/Qwen2/Qwen3 causal LM and return it.

    `mode` is one of off|fixed|learned|backward (docs/method.md §2); `lam` is lambda for `fixed` and
    `backward` and the initial lambda (theta = log lam) for `learned`. Calling it again
    replaces the previous mode; the attention arm and the kernel (sdpa, eager, ...) are kept.
    """
    check_mode(mode, lam)
    check_model(getattr(model, "config", None), type(model).__name__)
    config = model.config
    device = next(model.parameters()).device
    for layer in decoder_layers(model):
        attn = layer.self_attn
        attn.vscale = VScale(mode, config.num_key_value_heads, config.hidden_size, attn.head_dim, lam, sigma).to(device)
    route_through_pipeline(model)
    return model


def apply_attention(model: PreTrainedModel, attention: str = "softmax") -> PreTrainedModel:
    """Install an attention arm (`vscale.interventions.ARMS`) in every layer, initialised as its
    paper does; `softmax` removes any. V-scale, if installed, is kept."""
    check_attention(attention)
    check_model(getattr(model, "config", None), type(model).__name__)
    ARMS[attention].check(model.config, kernel_name(model))
    parameter = next(model.parameters())
    for index, layer in enumerate(decoder_layers(model)):
        attn = layer.self_attn
        if hasattr(attn, "arm"):
            attn.arm.uninstall(attn)
            del attn.arm
        arm = ARMS[attention].build(model.config, index)
        if arm is not None:
            attn.arm = arm.to(device=parameter.device, dtype=parameter.dtype)
            arm.install(attn)
    route_through_pipeline(model)
    return model


def apply_interventions(model: PreTrainedModel, vscale: str = "off", attention: str = "softmax", lam: float = 1.0, sigma: float = SIGMA) -> PreTrainedModel:
    """`apply_attention` then `apply_vscale`: the two interventions compose on every arm."""
    check_mode(vscale, lam)
    check_attention(attention)
    return apply_vscale(apply_attention(model, attention), vscale, lam, sigma)


def remove_interventions(model: PreTrainedModel) -> PreTrainedModel:
    """Undo `apply_interventions`: drop V-scale and the arm, and return to the plain kernel."""
    for layer in decoder_layers(model):
        attn = layer.self_attn
        if hasattr(attn, "arm"):
            attn.arm.uninstall(attn)
            del attn.arm
        if hasattr(attn, "vscale"):
            del attn.vscale
    model.set_attn_implementation(kernel_name(model))
    return model


def vscale_modules(model: nn.Module) -> list[VScale]:
    return [m for m in model.modules() if isinstance(m, VScale)]


def attention_arm(model: nn.Module) -> str:
    """The name of the attention arm installed in `model` (`softmax` when none is)."""
    return next((m.name for m in model.modules() if isinstance(m, tuple(ARMS.values()))), "softmax")


VSCALE_FILE = "vscale.json"
ARM_FILE = "attention_arm.safetensors"


def save_pretrained(model: PreTrainedModel, path, tokenizer=None) -> None:
    """A `from_pretrained` directory (the model's own weights, loadable by any HF tool) plus
    vscale.json (the V-scale mode, sigma, every layer's theta, and the attention arm) and the arm's
    parameters in attention_arm.safetensors, which `from_pretrained` below re-applies."""
    import json
    from pathlib import Path

    from safetensors.torch import save_file

    scalers = vscale_modules(model)
    state = model.state_dict()
    arm_weights = {k: v.contiguous() for k, v in state.items() if ".arm." in k}
    model.save_pretrained(path, state_dict={k: v for k, v in state.items() if ".vscale." not in k and ".arm." not in k})
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    attention = attention_arm(model)
    if scalers or attention != "softmax":
        info = {"attention": attention}
        if scalers:
            info |= {"mode": scalers[0].mode, "sigma": scalers[0].sigma, "theta": [s.theta.tolist() for s in scalers]}
        (Path(path) / VSCALE_FILE).write_text(json.dumps(info, indent=1))
    if arm_weights:
        save_file(arm_weights, str(Path(path) / ARM_FILE))


def from_pretrained(path: str, **kwargs) -> PreTrainedModel:
    """`AutoModelForCausalLM.from_pretrained`, then the interventions saved in the directory's
    vscale.json, if there is one (for a hub repo, `snapshot_download` it first)."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    file = Path(path) / VSCALE_FILE
    if not file.is_file():
        return model
    info = json.loads(file.read_text())
    apply_attention(model, info.get("attention", "softmax"))
    if "mode" in info:
        apply_vscale(model, info["mode"], sigma=info["sigma"])
        with torch.no_grad():
            for scaler, theta in zip(vscale_modules(model), info["theta"]):
                scaler.theta.copy_(torch.tensor(theta))
    if (Path(path) / ARM_FILE).is_file():
        missing, unexpected = model.load_state_dict(load_file(str(Path(path) / ARM_FILE)), strict=False)
        if unexpected or any(".arm." in k for k in missing):
            raise ValueError(f"{path}: {ARM_FILE} does not match the {info['attention']!r} arm (unexpected {unexpected}).")
    return model


def build_config(model_config: dict | None, pretrained: str | None):
    """The model's config, from a dict (`model_type` plus its fields) or a pretrained model's
    config.json: read before any weights, so every check runs first."""
    from transformers import AutoConfig

    if (model_config is None) == (pretrained is None):
        raise ValueError("model: give exactly one of model.model_config (a dict with model_type, e.g. llama) or model.pretrained (a local directory or hub name).")
    if pretrained is not None:
        from vscale.hub import from_hub

        return from_hub(AutoConfig.from_pretrained, pretrained, "model.pretrained")
    fields = dict(model_config)
    model_type = fields.pop("model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"model.model_config.model_type={model_type!r}: choose one of {', '.join(SUPPORTED_MODEL_TYPES)} (pre-norm RMSNorm decoders).")
    return AutoConfig.for_model(model_type, **fields)


def build_model(config, pretrained: str | None, attn_implementation: str = "sdpa") -> PreTrainedModel:
    """A causal LM in float32 from `build_config`'s config: fresh weights, or `pretrained`'s."""
    from transformers import AutoModelForCausalLM

    if pretrained is not None:
        from vscale.hub import from_hub

        model = from_hub(AutoModelForCausalLM.from_pretrained, pretrained, "model.pretrained", config=config,
                         attn_implementation=attn_implementation, dtype=torch.float32)
        return model.train()  # from_pretrained returns it in eval mode: dropout would silently stay off
    return AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation, dtype=torch.float32)
