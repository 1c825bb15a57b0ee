import pytest
import torch
from conftest import ARCHS, tiny_model

from vscale.eval.quant import (
    QUANT_MODES,
    calibrate,
    quantize_per_tensor,
    quantize_per_token,
    quantized_linears,
    w8a8,
    weight_per_channel,
)

STATIC = [m for m in QUANT_MODES if m != "per_token"]


def reference(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric INT8 by hand: round(x / s) clamped to -127..127, times s."""
    return (x / scale).round().clamp(-127, 127) * scale


def relative_error(q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (q - x).norm(dim=-1) / x.norm(dim=-1)


def batches(n: int = 2, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 97, (2, 16), generator=g) for _ in range(n)]


def logits(model, input_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=input_ids).logits


@pytest.fixture
def outlier_tokens() -> torch.Tensor:
    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
    x[5] *= 1000
    return x


def test_outlier_token_crushes_per_tensor_but_not_per_token(outlier_tokens):
    x = outlier_tokens
    others = torch.arange(64) != 5
    scale = x.abs().max() / 127
    per_tensor = quantize_per_tensor(x, scale.item())
    per_token = quantize_per_token(x)
    torch.testing.assert_close(per_tensor, reference(x, scale))
    torch.testing.assert_close(per_token, reference(x, x.abs().amax(-1, keepdim=True) / 127))
    assert (relative_error(per_tensor, x)[others] > 0.5).all()
    assert (relative_error(per_token, x) < 0.02).all()


def test_weight_per_channel_matches_reference():
    w = torch.randn(48, 32, generator=torch.Generator().manual_seed(0)) * torch.logspace(-2, 1, 48)[:, None]
    torch.testing.assert_close(weight_per_channel(w), reference(w, w.abs().amax(1, keepdim=True) / 127))


def test_per_token_changes_logits_but_stays_close():
    model = tiny_model()
    input_ids = batches(1)[0]
    exact = logits(model, input_ids)
    with w8a8(model, "per_token"):
        quantized = logits(model, input_ids)
    assert not torch.equal(quantized, exact)
    assert (quantized - exact).norm() / exact.norm() < 0.05
    assert torch.corrcoef(torch.stack([quantized.flatten(), exact.flatten()]))[0, 1] > 0.99


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mode", QUANT_MODES)
def test_exit_restores_logits_and_state_dict_bit_identical(arch, mode):
    model = tiny_model(arch)
    input_ids = batches(1, seed=2)[0]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    exact = logits(model, input_ids)
    with w8a8(model, mode, batches()):
        logits(model, input_ids)
    torch.testing.assert_close(logits(model, input_ids), exact, rtol=0, atol=0)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert not any(m._forward_pre_hooks for m in model.modules())


def test_exit_restores_weights_after_an_error_inside_the_block():
    model = tiny_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match="inside"), w8a8(model, "per_token"):
        raise RuntimeError("inside")
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert not any(m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("mode", QUANT_MODES)
def test_lm_head_never_quantized(mode):
    model = tiny_model()
    head = model.get_output_embeddings()
    weight = head.weight.clone()
    normed, head_input = [], []
    model.model.norm.register_forward_hook(lambda _, args, out: normed.append(out.clone()))
    with w8a8(model, mode, batches()):
        head.register_forward_pre_hook(lambda _, args: head_input.append(args[0].clone()))
        assert torch.equal(head.weight, weight)
        logits(model, batches(1)[0])
    assert torch.equal(head_input[-1], normed[-1])


@pytest.mark.parametrize("mode", STATIC)
def test_modes_quantize_the_weights_of_their_modules_only(mode):
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with w8a8(model, mode, batches()):
        changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"]
    if mode == "per_tensor_down_proj":
        names = [n for n in names if n.endswith("mlp.down_proj")]
    assert changed == {f"{n}.weight" for n in names}
    assert len(changed) == (14 if mode == "per_tensor" else 2)


def test_calibration_observes_min_max_of_linear_inputs():
    model = tiny_model()
    linears = quantized_linears(model, "per_tensor")
    inputs = {name: [] for name in linears}
    for name, m in linears.items():
        m.register_forward_pre_hook(lambda _, args, name=name: inputs[name].append(args[0].detach().clone()))
    observers = calibrate(model, linears, batches(3))
    assert set(observers) == set(linears) and len(linears) == 2 * 7
    for name, obs in observers.items():
        seen = torch.cat([x.flatten() for x in inputs[name]])
        assert len(inputs[name]) == 3
        assert obs.min_val.item() == seen.min().item() and obs.max_val.item() == seen.max().item()


@pytest.mark.parametrize("mode", STATIC)
def test_static_mode_quantizes_inputs_with_frozen_calibrated_scale(mode):
    model = tiny_model()
    calibration = batches(3)
    scales = {}
    hooks = [
        m.register_forward_pre_hook(
            lambda _, args, name=name: scales.__setitem__(
                name, max(scales.get(name, 0.0), args[0].abs().max().item() / 127)
            )
        )
        for name, m in quantized_linears(model, mode).items()
    ]
    for input_ids in calibration:
        logits(model, input_ids)
    for h in hooks:
        h.remove()
    raw, quantized = {}, {}
    for name, m in quantized_linears(model, mode).items():
        m.register_forward_pre_hook(lambda _, args, name=name: raw.__setitem__(name, args[0].clone()))
    with w8a8(model, mode, calibration):
        for name, m in quantized_linears(model, mode).items():
            m.register_forward_pre_hook(lambda _, args, name=name: quantized.__setitem__(name, args[0].clone()))
        logits(model, batches(1, seed=5)[0])
    assert set(quantized) == set(scales)
    for name in scales:
        torch.testing.assert_close(quantized[name], reference(raw[name], torch.tensor(scales[name])))


def test_bf16_model_quantizes_and_restores():
    model = tiny_model(dtype=torch.bfloat16)
    input_ids = batches(1)[0]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    exact = logits(model, input_ids)
    with w8a8(model, "per_tensor", batches()):
        quantized = logits(model, input_ids)
    assert quantized.dtype == torch.bfloat16 and not torch.equal(quantized, exact)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_unknown_mode_raises_naming_quant():
    with pytest.raises(ValueError, match=r"quant='per_channel'.*per_token, per_tensor, per_tensor_down_proj"):
        with w8a8(tiny_model(), "per_channel"):
            pass


@pytest.mark.parametrize("mode", STATIC)
@pytest.mark.parametrize("calibration", [(), iter([])], ids=["empty", "exhausted"])
def test_static_mode_without_calibration_raises_before_any_compute(mode, calibration):
    model = tiny_model()
    calls = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    with pytest.raises(ValueError, match=rf"quant='{mode}'.*calibration"):
        with w8a8(model, mode, calibration):
            pass
    assert calls == []
