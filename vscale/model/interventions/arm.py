"""The interface every attention arm (`model.attention`) implements, the model's own softmax included.

The registered attention pipeline (`vscale.model.pipeline`) calls an arm where the model would call its kernel:

    arm(module, query, key, value, attention_mask, kernel, **kwargs) -> (output, weights | None)

with `query` (batch, heads, tokens, head_dim) after RoPE, `key`/`value` (batch, kv_heads, keys,
head_dim) (values already through V-scale), `kernel` the model's own attention function (sdpa,
eager, ...) and `output` (batch, tokens, heads, head_dim), as transformers' attention functions
return it. For the diagnostics an arm gives the weights it actually puts on token 0 and the mass
it puts on no token (`token0`), so the sink metrics describe the attention that runs.
"""

from abc import ABCMeta, abstractmethod

import torch
from torch import nn

from vscale.errors import ConfigError


def head_dim(config) -> int:
    """The model's per-head width: its `head_dim` where the config sets one (Qwen3), else d_model / heads."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


class Arm(nn.Module, metaclass=ABCMeta):
    """An attention arm: refused or built per model (`check`, `build`), hooked onto its attention
    module (`install`, `uninstall`), run in place of the kernel (`forward`) and measured (`token0`)."""

    name: str
    kernels: tuple[str, ...] | None = None  # the model kernels it runs on; None: any

    @classmethod
    def check(cls, config, kernel: str) -> None:
        """Refuse, before any compute, a model this arm cannot run on, naming the fields."""
        if cls.kernels is not None and kernel not in cls.kernels:
            raise ConfigError(
                f"model.attention={cls.name!r} runs on model.attn_implementation "
                f"{' or '.join(cls.kernels)}, not {kernel!r}: it hands the kernel a mask or computes the weights "
                "itself."
            )

    @classmethod
    @abstractmethod
    def build(cls, config, layer_index: int) -> "Arm | None":
        """The arm of one layer, initialised as its paper does; None: nothing to install."""

    def install(self, attn: nn.Module) -> None:
        """Hooks the arm needs on its attention module (none unless it says so)."""

    def uninstall(self, attn: nn.Module) -> None:
        """Remove what `install` added."""

    @abstractmethod
    def forward(self, module, query, key, value, attention_mask, kernel, **kwargs):
        """The layer's attention (output, weights | None), in place of `kernel`'s."""

    @abstractmethod
    def token0(
        self, query: torch.Tensor, key: torch.Tensor, scaling: float
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """a_t0 (batch, heads, tokens), and the weight each query puts on no token (None: all on tokens)."""
