"""Installing the interventions in a Hugging Face causal LM, in place: V-scale on the value path and an
attention arm, both reached through the attention pipeline (`vscale.model.pipeline`).

The public `apply_*` functions are entry points: they check their arguments (`checks`) and
install. The training module checks once in its constructor and calls `install` directly."""

from torch import nn
from transformers import PreTrainedModel

from vscale.model.checks import check_interventions
from vscale.model.interventions import ARMS, Arm
from vscale.model.interventions.value_scale import SIGMA, VScale
from vscale.model.pipeline import decoder_layers, route_through_pipeline, unroute


def _install_vscale(model: PreTrainedModel, mode: str, lam: float, sigma: float) -> None:
    """V-scale in every layer, replacing any."""
    config, device = model.config, next(model.parameters()).device
    for layer in decoder_layers(model):
        attn = layer.self_attn
        attn.vscale = VScale(mode, config.num_key_value_heads, config.hidden_size, attn.head_dim, lam, sigma).to(device)


def _remove_arm(attn: nn.Module) -> None:
    if hasattr(attn, "arm"):
        attn.arm.uninstall(attn)
        del attn.arm


def _install_arm(model: PreTrainedModel, attention: str) -> None:
    """The arm `attention` in every layer, replacing any, initialised as its paper does."""
    parameter = next(model.parameters())
    for index, layer in enumerate(decoder_layers(model)):
        attn = layer.self_attn
        _remove_arm(attn)
        arm = ARMS[attention].build(model.config, index)
        if arm is not None:
            attn.arm = arm.to(device=parameter.device, dtype=parameter.dtype)
            arm.install(attn)


def install(
    model: PreTrainedModel,
    vscale: str | None = None,
    attention: str | None = None,
    lam: float = 1.0,
    sigma: float = SIGMA,
) -> PreTrainedModel:
    """The arm, then V-scale (None: keep what is installed), trusting them to be checked; the two compose on
    every arm. The model is switched to the pipeline once, whatever was installed."""
    if attention is not None:
        _install_arm(model, attention)
    if vscale is not None:
        _install_vscale(model, vscale, lam, sigma)
    route_through_pipeline(model)
    return model


def apply_vscale(
    model: PreTrainedModel, mode: str = "learned", lam: float = 1.0, sigma: float = SIGMA
) -> PreTrainedModel:
    """Install V-scale in place on a Llama/Mistral/Qwen2/Qwen3 causal LM and return it.

    `mode` is one of off|fixed|learned|backward (docs/method.md §2); `lam` is lambda for `fixed` and
    `backward` and the initial lambda (theta = log lam) for `learned`. Calling it again
    replaces the previous mode; the attention arm and the kernel (sdpa, eager, ...) are kept.
    """
    check_interventions(getattr(model, "config", None), vscale=mode, lam=lam, who=type(model).__name__)
    return install(model, vscale=mode, lam=lam, sigma=sigma)


def apply_attention(model: PreTrainedModel, attention: str = "softmax") -> PreTrainedModel:
    """Install an attention arm (`vscale.ARMS`) in every layer, initialised as its paper does;
    `softmax` removes any. V-scale, if installed, is kept."""
    check_interventions(getattr(model, "config", None), attention=attention, who=type(model).__name__)
    return install(model, attention=attention)


def apply_interventions(
    model: PreTrainedModel, vscale: str = "off", attention: str = "softmax", lam: float = 1.0, sigma: float = SIGMA
) -> PreTrainedModel:
    """`apply_attention` then `apply_vscale`, checked together first."""
    check_interventions(getattr(model, "config", None), vscale, lam, attention, who=type(model).__name__)
    return install(model, vscale, attention, lam, sigma)


def remove_interventions(model: PreTrainedModel) -> PreTrainedModel:
    """Undo `apply_interventions`: drop V-scale and the arm, and return to the plain kernel."""
    for layer in decoder_layers(model):
        attn = layer.self_attn
        _remove_arm(attn)
        if hasattr(attn, "vscale"):
            del attn.vscale
    unroute(model)
    return model


def vscale_modules(model: nn.Module) -> list[VScale]:
    return [m for m in model.modules() if isinstance(m, VScale)]


def attention_arm(model: nn.Module) -> str:
    """The name of the attention arm installed in `model` (`softmax` when none is)."""
    return next((m.name for m in model.modules() if isinstance(m, Arm)), "softmax")
