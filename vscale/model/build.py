"""Building the causal LM a run trains: its config first (so every check runs before any
weights exist), then fresh or pretrained weights in float32."""

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from vscale.errors import ConfigError
from vscale.hub import from_hub
from vscale.model.checks import SUPPORTED_MODEL_TYPES, check_model


def build_config(model_config: dict | None, pretrained: str | None):
    """The model's config, from a dict (`model_type` plus its fields) or a pretrained model's
    config.json: read before any weights, so every check runs first. Its model type is checked
    here, where it enters: a dict's before transformers is asked for the type, a checkpoint's once read."""
    if (model_config is None) == (pretrained is None):
        raise ConfigError(
            "model: give exactly one of model.model_config (a dict with model_type, e.g. llama) "
            "or model.pretrained (a local directory or hub name)."
        )
    if pretrained is not None:
        config = from_hub(AutoConfig.from_pretrained, pretrained, "model.pretrained")
        check_model(config, f"model.pretrained={pretrained!r}")
        return config
    fields = dict(model_config)
    model_type = fields.pop("model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(
            f"model.model_config.model_type={model_type!r}: choose one of "
            f"{', '.join(SUPPORTED_MODEL_TYPES)} (pre-norm RMSNorm decoders)."
        )
    return AutoConfig.for_model(model_type, **fields)


def check_embedding_std(embedding_std: float | None, pretrained: str | None) -> None:
    """An embedding scale is a fresh model's initialisation: a positive std, and no pretrained weights to overwrite."""
    if embedding_std is None:
        return
    if pretrained is not None:
        raise ConfigError(
            f"model.embedding_std={embedding_std} re-initialises a fresh model's embeddings; with model.pretrained "
            "the weights are loaded: remove model.embedding_std."
        )
    if not embedding_std > 0:
        raise ConfigError(
            f"model.embedding_std={embedding_std} must be > 0 (the "
            "std of the normal the input embeddings are drawn from)."
        )


def build_model(
    config, pretrained: str | None, attn_implementation: str = "sdpa", embedding_std: float | None = None
) -> PreTrainedModel:
    """A causal LM in float32 from `build_config`'s config: fresh weights, or `pretrained`'s. `embedding_std`
    draws a fresh model's input embeddings from N(0, embedding_std^2) instead of the config's initializer_range:
    PyTorch's own default (1) gives every token a residual norm of about sqrt(d_model) from the start, as in Guo et
    al.'s models, where the residual peak forms (docs/bb-peak.md)."""
    check_embedding_std(embedding_std, pretrained)
    if pretrained is not None:
        model = from_hub(
            AutoModelForCausalLM.from_pretrained,
            pretrained,
            "model.pretrained",
            config=config,
            attn_implementation=attn_implementation,
            dtype=torch.float32,
        )
        return model.train()  # from_pretrained returns it in eval mode: dropout would silently stay off
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation, dtype=torch.float32)
    if embedding_std is not None:
        torch.nn.init.normal_(model.get_input_embeddings().weight, std=embedding_std)
    return model
