"""W8A8 fake quantization for activation-range sensitivity (docs/method.md §5).

Symmetric INT8 with the restricted range -127..127 and zero point 0, so that +x and -x round to
the same magnitude and scale = absmax / 127 exactly. Weights are static per output channel;
activations are dynamic per token (`per_token`) or static per tensor from a min/max observer over
calibration batches (`per_tensor`, and `per_tensor_down_proj` for `*mlp.down_proj` only).

Fake quantization (quantize, then dequantize back to float) uses PyTorch's own ops and
`torch.ao.quantization` observers; it is computed in float32 and cast back to the layer's dtype.
"""

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver

from vscale.errors import ConfigError

QUANT_MODES = ("per_token", "per_tensor", "per_tensor_down_proj")
QMIN, QMAX = -127, 127


def check_quant_mode(mode: str) -> None:
    if mode not in QUANT_MODES:
        raise ConfigError(f"unknown quant={mode!r}; choose one of {', '.join(QUANT_MODES)} (docs/method.md §5).")


def quantize_per_token(x: torch.Tensor) -> torch.Tensor:
    """Dynamic: each token (row over the last dim) gets its own scale absmax / 127, so one outlier
    token cannot crush the resolution of the others. An observer keeps a running range across
    calls, which a dynamic scale must not, hence the absmax here."""
    x = x.float()
    rows = x.reshape(-1, x.shape[-1])
    scale = (rows.detach().abs().amax(-1) / QMAX).clamp_min(torch.finfo(torch.float32).eps)
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(rows, scale, zero, 0, QMIN, QMAX).view_as(x)


def quantize_per_tensor(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Static: one scale for the whole tensor, fixed beforehand."""
    return torch.fake_quantize_per_tensor_affine(x.float(), scale, 0, QMIN, QMAX)


def weight_per_channel(w: torch.Tensor) -> torch.Tensor:
    """A (out, in) weight fake-quantized with one scale per output row."""
    w = w.detach().float()
    observer = PerChannelMinMaxObserver(
        ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric, quant_min=QMIN, quant_max=QMAX
    )
    observer.to(w.device)(w)
    scale, zero = observer.calculate_qparams()
    return torch.fake_quantize_per_channel_affine(w, scale, zero.to(torch.int32), 0, QMIN, QMAX)


def quantized_linears(model: nn.Module, mode: str) -> dict[str, nn.Linear]:
    """The Linears a mode quantizes, by name: all but the LM head, or only `*mlp.down_proj`."""
    head = model.get_output_embeddings()
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear)
        and m is not head
        and (mode != "per_tensor_down_proj" or name.endswith("mlp.down_proj"))
    }


def _observe(observer: MinMaxObserver):
    def hook(_, args):
        observer(args[0])

    return hook


def _quantize_input(quantize):
    def hook(_, args):
        return (quantize(args[0]).to(args[0].dtype), *args[1:])

    return hook


@torch.no_grad()
def calibrate(
    model: nn.Module, linears: dict[str, nn.Linear], batches: Iterable[torch.Tensor]
) -> dict[str, MinMaxObserver]:
    """Run the unquantized model over batches of input_ids; one min/max observer per Linear input."""
    device = next(model.parameters()).device
    observers = {
        name: MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, quant_min=QMIN, quant_max=QMAX).to(
            device
        )
        for name in linears
    }
    hooks = [m.register_forward_pre_hook(_observe(observers[name])) for name, m in linears.items()]
    try:
        for input_ids in batches:
            model(input_ids=input_ids.to(device))
    finally:
        for h in hooks:
            h.remove()
    return observers


@contextlib.contextmanager
def w8a8(model: nn.Module, mode: str, calibration: Iterable[torch.Tensor] = ()) -> Iterator[nn.Module]:
    """Inside the block every nn.Linear except the LM head (model.get_output_embeddings()) — or only
    `*mlp.down_proj` for per_tensor_down_proj — has its weight fake-quantized per output channel
    (static, symmetric INT8) and its input activations fake-quantized as the mode says. Static modes
    first run the model (no grad) over `calibration` (batches of input_ids) to observe each Linear
    input's min/max, then freeze per-tensor scales. On exit the model is exactly restored
    (weights bit-identical, hooks removed)."""
    check_quant_mode(mode)
    batches = list(calibration)
    if mode != "per_token" and not batches:
        raise ConfigError(f"quant={mode!r} calibrates static activation ranges: pass calibration batches of input_ids.")
    linears = quantized_linears(model, mode)
    if mode == "per_token":
        quantizers = {name: quantize_per_token for name in linears}
    else:
        scales = {name: obs.calculate_qparams()[0].item() for name, obs in calibrate(model, linears, batches).items()}
        quantizers = {name: lambda x, s=scales[name]: quantize_per_tensor(x, s) for name in linears}
    originals = {name: m.weight.detach().clone() for name, m in linears.items()}
    hooks = [m.register_forward_pre_hook(_quantize_input(quantizers[name])) for name, m in linears.items()]
    try:
        with torch.no_grad():
            for m in linears.values():
                m.weight.copy_(weight_per_channel(m.weight))
        yield model
    finally:
        for h in hooks:
            h.remove()
        with torch.no_grad():
            for name, m in linears.items():
                m.weight.copy_(originals[name])
