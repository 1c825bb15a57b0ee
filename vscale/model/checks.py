"""What a model and its interventions must be, checked once, where they enter (the training
module's constructor, or a public `apply_*` call), before any compute; the code below trusts them."""

from vscale.errors import ConfigError
from vscale.model.interventions import ARMS, check_attention
from vscale.model.interventions.value_scale import check_mode
from vscale.model.pipeline import PREFIX

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
"""Pre-norm RMSNorm decoders (method §1) whose attention goes through transformers' function registry."""


def check_model(
    config,
    who: str = "the model",
    tokenizer=None,
    tokenizer_field: str = "data.tokenizer",
    lengths: dict[str, int] | None = None,
) -> None:
    """Everything a model must be here: a pre-norm RMSNorm decoder (method §1), a vocabulary holding
    every id of the tokenizer used with it, and positions for every length asked (`lengths`:
    field -> tokens). `who` names the model in the messages."""
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(
            f"{who} must be a pre-norm RMSNorm decoder ({', '.join(SUPPORTED_MODEL_TYPES)}); got "
            f"model_type={model_type!r}. Build it from a LlamaConfig, Qwen2Config, Qwen3Config or MistralConfig, or "
            "load such a checkpoint."
        )
    if tokenizer is not None and len(tokenizer) > config.vocab_size:
        raise ConfigError(
            f"{tokenizer_field} has {len(tokenizer)} tokens but {who}'s vocab_size is {config.vocab_size}: use the "
            f"tokenizer {who} was trained with, or, for a new model, set model.model_config.vocab_size >= "
            f"{len(tokenizer)}."
        )
    max_pos = getattr(config, "max_position_embeddings", None)
    for field, length in (lengths or {}).items():
        if max_pos is not None and length > max_pos:
            raise ConfigError(
                f"{field}={length} exceeds {who}'s max_position_embeddings={max_pos}: lower {field}, or, for a new "
                "model, raise model.model_config.max_position_embeddings."
            )


def check_interventions(
    config,
    vscale: str | None = None,
    lam: float = 1.0,
    attention: str | None = None,
    kernel: str | None = None,
    who: str = "the model",
) -> None:
    """A model that exists (`apply_*`, the config of `config`) can take the interventions asked:
    it is a model `check_model` accepts, and `check_asked` holds."""
    check_model(config, who)
    check_asked(config, vscale, lam, attention, kernel)


def check_asked(
    config, vscale: str | None = None, lam: float = 1.0, attention: str | None = None, kernel: str | None = None
) -> None:
    """V-scale `vscale` with lambda `lam` and the attention arm `attention` (None: not asked) on the
    attention kernel `kernel` (default: the config's own), for a config already checked to be a
    supported decoder (`check_model`, or `build_config`'s, which checks it where it enters)."""
    if vscale is not None:
        check_mode(vscale, lam)
    if attention is not None:
        check_attention(attention)
        ARMS[attention].check(config, kernel or config._attn_implementation.removeprefix(PREFIX))
