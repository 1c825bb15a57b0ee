"""apply_vscale on real transformers models: Llama and Qwen3, MHA and GQA (docs/method.md §2)."""

import copy
import re

import pytest
import torch
from conftest import tiny_model
from torch import nn

from vscale import apply_vscale
from vscale.model.interventions.value_scale import vscale_constant

TOKENS = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(0))


def loss_and_grads(model, tokens=TOKENS):
    model.zero_grad()
    out = model(input_ids=tokens, labels=tokens)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


class SpecValueScale(nn.Module):
    """Independent V-scale on the v_proj output: (B, T, H_kv*d) -> per-head phi(||v||^2) v."""

    def __init__(self, proj: nn.Linear, kv_heads: int, c: float):
        super().__init__()
        self.proj, self.kv_heads, self.c = proj, kv_heads, c

    def forward(self, x):
        v = self.proj(x)
        heads = v.unflatten(-1, (self.kv_heads, -1))
        r = (heads * heads).sum(-1, keepdim=True)
        return (heads * r / (r + self.c)).flatten(-2)


def test_off_matches_unpatched_model_logits_and_gradients(arch_heads):
    ref = tiny_model(*arch_heads)
    model = apply_vscale(copy.deepcopy(ref), "off")
    logits_ref, grads_ref = loss_and_grads(ref)
    logits, grads = loss_and_grads(model)
    assert torch.equal(logits, logits_ref)
    assert grads.keys() == grads_ref.keys()
    assert all(torch.equal(grads[n], grads_ref[n]) for n in grads)


def test_fixed_matches_spec_applied_at_value_projection(arch_heads):
    arch, kv = arch_heads
    ref = tiny_model(arch, kv)
    model = apply_vscale(copy.deepcopy(ref), "fixed", lam=3.0)
    c = vscale_constant(64, 16) * 3.0
    for layer in ref.model.layers:
        layer.self_attn.v_proj = SpecValueScale(layer.self_attn.v_proj, kv, c)
    logits_ref, grads_ref = loss_and_grads(ref)
    logits, grads = loss_and_grads(model)
    assert torch.allclose(logits, logits_ref, atol=1e-5)
    for name, g in grads.items():
        assert torch.allclose(g, grads_ref[name.replace("v_proj.", "v_proj.proj.")], atol=1e-5), name


def test_fixed_changes_the_forward(arch_heads):
    ref = tiny_model(*arch_heads)
    model = apply_vscale(copy.deepcopy(ref), "fixed")
    assert not torch.allclose(model(TOKENS).logits, ref(TOKENS).logits, atol=1e-3)


def test_learned_at_init_equals_fixed(arch_heads):
    fixed = apply_vscale(tiny_model(*arch_heads), "fixed")
    learned = apply_vscale(tiny_model(*arch_heads), "learned")
    assert torch.equal(learned(TOKENS).logits, fixed(TOKENS).logits)


def test_learned_adds_one_theta_per_layer_and_kv_head(arch_heads):
    arch, kv = arch_heads
    base = {n for n, _ in tiny_model(arch, kv).named_parameters()}
    model = apply_vscale(tiny_model(arch, kv), "learned")
    new = {n: p for n, p in model.named_parameters() if n not in base}
    assert sorted(new) == [f"model.layers.{i}.self_attn.vscale.theta" for i in range(2)]
    assert all(p.shape == (kv,) and p.requires_grad and torch.equal(p, torch.zeros(kv)) for p in new.values())
    assert set(new) <= set(model.state_dict())
    _, grads = loss_and_grads(model)
    assert all(grads[n].abs().sum() > 0 for n in new)


@pytest.mark.parametrize("mode", ["off", "fixed", "backward"])
def test_only_learned_adds_parameters(arch_heads, mode):
    ref = tiny_model(*arch_heads)
    model = apply_vscale(copy.deepcopy(ref), mode)
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert model.state_dict().keys() == ref.state_dict().keys()


def test_backward_forward_is_bit_identical_to_off(arch_heads):
    off = apply_vscale(tiny_model(*arch_heads), "off")
    backward = apply_vscale(tiny_model(*arch_heads), "backward")
    assert torch.equal(backward(TOKENS).logits, off(TOKENS).logits)


def test_backward_changes_only_the_value_path_gradient(arch_heads):
    """In the last layer the upstream gradient is the same in both modes, so only v_proj's gradient
    may differ; it must equal J^T g applied to off's value gradient."""
    off = apply_vscale(tiny_model(*arch_heads), "off")
    backward = apply_vscale(tiny_model(*arch_heads), "backward")
    _, g_off = loss_and_grads(off)
    _, g_bwd = loss_and_grads(backward)
    last = "model.layers.1.self_attn."
    for proj in ("q_proj", "k_proj", "o_proj"):
        assert torch.allclose(g_bwd[last + proj + ".weight"], g_off[last + proj + ".weight"], atol=1e-7)
    assert not torch.allclose(g_bwd[last + "v_proj.weight"], g_off[last + "v_proj.weight"], atol=1e-4)


def test_backward_value_gradient_is_spec_jacobian_of_off_gradient(arch_heads):
    arch, kv = arch_heads
    captured = {}

    def run(mode):
        model = apply_vscale(tiny_model(arch, kv), mode)
        proj = model.model.layers[1].self_attn.v_proj

        def keep(module, inputs, out):
            out.retain_grad()
            captured[mode] = out

        proj.register_forward_hook(keep)
        model(input_ids=TOKENS, labels=TOKENS).loss.backward()
        return captured[mode]

    v_off, v_bwd = run("off"), run("backward")
    v = v_off.detach().unflatten(-1, (kv, -1))
    g = v_off.grad.unflatten(-1, (kv, -1))
    c = vscale_constant(64, 16)
    r = (v * v).sum(-1, keepdim=True)
    expected = r / (r + c) * g + 2 * c / (r + c) ** 2 * (v * g).sum(-1, keepdim=True) * v
    assert torch.allclose(v_bwd.grad, expected.flatten(-2), atol=1e-7)


@pytest.mark.parametrize("mode", ["off", "fixed", "learned", "backward"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_causal_mask_is_honoured(arch_heads, mode, attn):
    model = apply_vscale(tiny_model(*arch_heads, attn=attn), mode)
    changed = TOKENS.clone()
    changed[:, 8] = (changed[:, 8] + 1) % 97
    a, b = model(TOKENS).logits, model(changed).logits
    assert torch.allclose(a[:, :8], b[:, :8], atol=1e-6)
    assert not torch.allclose(a[:, 8:], b[:, 8:], atol=1e-3)


@pytest.mark.parametrize("mode", ["off", "learned"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_padding_mask_is_honoured(arch_heads, mode, attn):
    model = apply_vscale(tiny_model(*arch_heads, attn=attn), mode)
    seq = TOKENS[:1, :8]
    padded = torch.cat([torch.full((1, 4), 5), seq], dim=1)
    mask = torch.cat([torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 8, dtype=torch.long)], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    alone = model(seq).logits
    with_pad = model(padded, attention_mask=mask, position_ids=positions).logits[:, 4:]
    assert torch.allclose(with_pad, alone, atol=1e-5)


def test_sdpa_and_eager_kernels_agree_under_vscale(arch_heads):
    sdpa = apply_vscale(tiny_model(*arch_heads, attn="sdpa"), "learned")
    eager = apply_vscale(tiny_model(*arch_heads, attn="eager"), "learned")
    assert eager.config._attn_implementation == "vscale_eager"
    assert torch.allclose(sdpa(TOKENS).logits, eager(TOKENS).logits, atol=1e-5)


def test_reapplying_replaces_the_mode():
    model = apply_vscale(apply_vscale(tiny_model(), "learned"), "off")
    ref = tiny_model()
    assert torch.equal(model(TOKENS).logits, ref(TOKENS).logits)
    assert model.config._attn_implementation == "vscale_sdpa"


def test_non_pre_norm_model_is_refused():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))
    with pytest.raises(ValueError, match="pre-norm RMSNorm.*model_type='gpt2'"):
        apply_vscale(gpt2, "learned")


def test_a_non_pre_norm_checkpoint_is_refused_as_its_config_is_read(tmp_path):
    from transformers import GPT2Config

    from vscale.model import build_config

    GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50).save_pretrained(tmp_path)
    refusal = (
        rf"model.pretrained={re.escape(repr(str(tmp_path)))} must be a pre-norm RMSNorm decoder.*model_type='gpt2'"
    )
    with pytest.raises(ValueError, match=refusal):
        build_config(None, str(tmp_path))


@pytest.mark.parametrize("mode", ["on", "Learned", ""])
def test_unknown_mode_is_refused(mode):
    with pytest.raises(ValueError, match="unknown V-scale mode.*choose one of off, fixed, learned, backward"):
        apply_vscale(tiny_model(), mode)


@pytest.mark.parametrize("lam", [0.0, -1.0, float("nan"), float("inf")])
def test_non_positive_lambda_is_refused(lam):
    with pytest.raises(ValueError, match="lambda.*must be a finite number > 0"):
        apply_vscale(tiny_model(), "fixed", lam=lam)


def test_removing_the_interventions_restores_the_unpatched_model():
    from vscale.model import remove_interventions

    model = remove_interventions(apply_vscale(tiny_model(), "learned"))
    assert model.config._attn_implementation == "sdpa"
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in tiny_model().named_parameters()]
    assert torch.equal(model(TOKENS).logits, tiny_model()(TOKENS).logits)
