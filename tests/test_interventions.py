"""The attention arms (`model.attention`) on real transformers models: each arm's forward against an
eager reference written here from its paper's formula, its sink metrics against its materialised
weights, and its composition with V-scale, the kernels, padding, checkpoints and training."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import metrics, save_tiny_pretrained, tiny_model, train

from vscale import diagnose
from vscale.model import apply_interventions, attention_arm, decoder_layers, from_pretrained, save_pretrained
from vscale.model.interventions import ARMS, Arm

ARCHS = [("llama", 4), ("llama", 2), ("qwen3", 4), ("qwen3", 2), ("mistral", 2), ("qwen2", 4)]
T = 40  # at least the diagnostics' window (32 tokens)
TOKENS = torch.randint(0, 97, (2, T), generator=torch.Generator().manual_seed(0))
WITH_EXTRA = ("sink_logit", "kv_bias", "softpick")  # arms that put weight on no token


def armed(arm: str, arch: str = "llama", kv_heads: int = 2, attn: str = "sdpa", vscale: str = "off", seed: int = 0):
    """A tiny model with `arm` installed and its parameters moved well away from their
    initialisation, so that a reference which ignored them could not agree by accident."""
    model = apply_interventions(tiny_model(arch, kv_heads, attn, seed=seed), vscale, arm).double()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".arm." in name:
                p.copy_(
                    (1.0 if name.endswith("norm_weight") else 0.0)
                    + 0.5 * torch.randn(p.shape, generator=generator, dtype=p.dtype)
                )
    return model


def capture(model, tokens=TOKENS) -> list[dict]:
    """Per layer: q, k (after RoPE), v (before V-scale), the attention module's input, and the
    input of o_proj (the arm's output, heads concatenated)."""
    records = [{} for _ in decoder_layers(model)]
    handles = []
    for rec, layer in zip(records, decoder_layers(model)):
        attn = layer.self_attn

        def tap(arm, q, k, v, scaling, rec=rec):
            rec.update(q=q.detach(), k=k.detach(), v=v.detach(), scaling=scaling)

        attn.diagnostics_tap = tap
        handles.append(
            attn.register_forward_pre_hook(
                lambda m, a, kw, rec=rec: rec.update(h=kw["hidden_states"].detach()), with_kwargs=True
            )
        )
        handles.append(attn.o_proj.register_forward_pre_hook(lambda m, a, rec=rec: rec.update(out=a[0].detach())))
    try:
        with torch.no_grad():
            model(tokens)
    finally:
        for handle in handles:
            handle.remove()
        for layer in decoder_layers(model):
            del layer.self_attn.diagnostics_tap
    return records


def rep(x: torch.Tensor, heads: int) -> torch.Tensor:
    return x.repeat_interleave(heads // x.shape[1], dim=1)


def causal(t: int) -> torch.Tensor:
    return torch.ones(t, t, dtype=torch.bool).tril()


def softmax_weights(q, k, scaling):
    scores = (q @ rep(k, q.shape[1]).transpose(-1, -2)) * scaling
    return scores.masked_fill(~causal(q.shape[2]), float("-inf")).softmax(-1)


def reference(name: str, arm, layer: int, rec: dict, value: torch.Tensor):
    """(output (batch, tokens, heads * head_dim), weights on tokens (batch, heads, T, T), weight
    on no token (batch, heads, T) or None), from the arm's paper formula."""
    q, k, scaling = rec["q"], rec["k"], rec["scaling"]
    B, H, T, d = q.shape
    v = rep(value, H)
    extra = None
    if name in ("softmax", "gated"):
        weights = softmax_weights(q, k, scaling)
        out = weights @ v
        if name == "gated":  # Qiu et al. 2025 eq. (G1): Y' = Y * sigmoid(X W_theta), per head and channel
            gate = torch.sigmoid(rec["h"] @ arm.gate_proj.weight.T).view(B, T, H, d).transpose(1, 2)
            out = out * gate
    elif name == "sink_logit":  # a_tj = exp(x_tj) / (exp(s_h) + sum_j exp(x_tj))
        scores = ((q @ rep(k, H).transpose(-1, -2)) * scaling).masked_fill(~causal(T), float("-inf"))
        sink = arm.logits.view(1, H, 1, 1).expand(B, H, T, 1)
        full = torch.cat([sink, scores], -1).softmax(-1)
        weights, extra = full[..., 1:], full[..., 0]
        out = weights @ v
    elif name == "softpick":  # Zuhri et al. 2025 eq. (3): ReLU(e^x - 1) / (sum_j |e^x - 1| + eps)
        scores = (q @ rep(k, H).transpose(-1, -2)) * scaling
        shifted = torch.where(causal(T), torch.expm1(scores), 0)
        weights = F.relu(shifted) / (shifted.abs().sum(-1, keepdim=True) + 1e-8)
        extra = 1 - weights.sum(-1)
        out = weights @ v
    elif name == "kv_bias":  # Sun et al. 2024 eq. (3): softmax(Q [k'; K]^T / sqrt(d)) [v'; V]
        k_bias = rep(arm.key.view(1, -1, 1, d).expand(B, -1, 1, d), H)
        v_bias = rep(arm.value.view(1, -1, 1, d).expand(B, -1, 1, d), H)
        scores = (q @ torch.cat([k_bias, rep(k, H)], 2).transpose(-1, -2)) * scaling
        allowed = torch.cat([torch.ones(T, 1, dtype=torch.bool), causal(T)], -1)
        full = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
        weights, extra = full[..., 1:], full[..., 0]
        out = full @ torch.cat([v_bias, v], 2)
    elif name == "diff":  # Ye et al. 2024 eqs. (1)-(3), lambda_init of §2.1 with l counted from 1
        half = d // 2
        pairs1 = [i for i in range(half) if i % 2 == 0]  # whole RoPE rotation pairs (i, i + d/2)
        pairs2 = [i for i in range(half) if i % 2 == 1]
        idx1, idx2 = pairs1 + [i + half for i in pairs1], pairs2 + [i + half for i in pairs2]
        lam_init = 0.8 - 0.6 * math.exp(-0.3 * ((layer + 1) - 1))
        lam = torch.exp(arm.lambda_q1 @ arm.lambda_k1) - torch.exp(arm.lambda_q2 @ arm.lambda_k2) + lam_init
        a1 = softmax_weights(q[..., idx1], k[..., idx1], half**-0.5)
        a2 = softmax_weights(q[..., idx2], k[..., idx2], half**-0.5)
        weights = a1 - lam * a2
        heads = weights @ v
        out = heads / torch.sqrt(heads.pow(2).mean(-1, keepdim=True) + 1e-5) * arm.norm_weight * (1 - lam_init)
    else:
        raise AssertionError(name)
    return out.transpose(1, 2).reshape(B, T, H * d), weights, extra


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("arch,kv_heads", ARCHS, ids=[f"{a}-{'mha' if h == 4 else 'gqa'}" for a, h in ARCHS])
@pytest.mark.parametrize("name", list(ARMS))
def test_arm_forward_equals_its_paper_formula(name, arch, kv_heads, attn):
    """In float64. The eager kernel takes its softmax in float32; softpick's eps sits in the
    denominator after the row maximum is factored out (as in the paper's code), a 1e-8 relative
    difference from eq. (3) at a row's first token."""
    model = armed(name, arch, kv_heads, attn)
    tolerance = {"rtol": 1e-7, "atol": 1e-9} if attn == "sdpa" else {"rtol": 1e-5, "atol": 1e-6}
    for layer, (rec, block) in enumerate(zip(capture(model), decoder_layers(model))):
        arm = getattr(block.self_attn, "arm", None)
        out, _, _ = reference(name, arm, layer, rec, rec["v"])
        torch.testing.assert_close(rec["out"], out, **tolerance)


@pytest.mark.parametrize("name", list(ARMS))
def test_arm_reads_the_values_through_vscale(name):
    model = armed(name, vscale="learned")
    for layer, (rec, block) in enumerate(zip(capture(model), decoder_layers(model))):
        out, _, _ = reference(name, getattr(block.self_attn, "arm", None), layer, rec, block.self_attn.vscale(rec["v"]))
        torch.testing.assert_close(rec["out"], out, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", list(ARMS))
def test_arm_token0_weights_equal_its_materialised_weights(name):
    model = armed(name, "qwen3", 2)
    for layer, (rec, block) in enumerate(zip(capture(model), decoder_layers(model))):
        arm = getattr(block.self_attn, "arm", None) or ARMS["softmax"]()
        _, weights, extra = reference(name, arm, layer, rec, rec["v"])
        a0, got_extra = arm.token0(rec["q"], rec["k"], rec["scaling"])
        torch.testing.assert_close(a0.double(), weights[..., 0], rtol=1e-5, atol=1e-6)
        if extra is None:
            assert got_extra is None
        else:
            torch.testing.assert_close(got_extra.double(), extra, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(ARMS))
def test_diagnostics_report_the_sink_of_the_weights_the_arm_uses(name):
    """SPEC §3: alpha_h = mean_{t<T_eps} a_t0 (and over rows), head-averaged per layer; the extra
    mass is the weight a query puts on no token, averaged over rows, tokens and heads."""
    model = armed(name)
    logged = diagnose(model, TOKENS)
    for layer, (rec, block) in enumerate(zip(capture(model), decoder_layers(model))):
        arm = getattr(block.self_attn, "arm", None)
        _, weights, extra = reference(name, arm, layer, rec, rec["v"])
        assert logged[f"sink/alpha/layer_{layer}"] == pytest.approx(weights[..., 0].mean().item(), rel=1e-4, abs=1e-6)
        assert logged[f"sink/mass/layer_{layer}"] == pytest.approx(weights[..., 0].mean().item(), rel=1e-4, abs=1e-6)
        if extra is None:
            assert f"sink/extra_mass/layer_{layer}" not in logged
        else:
            assert logged[f"sink/extra_mass/layer_{layer}"] == pytest.approx(extra.mean().item(), rel=1e-4, abs=1e-6)
    assert all(math.isfinite(v) for v in logged.values())
    assert {
        "gsink/ratio/layer_1",
        "gsink/ratio_summed/layer_1",
        "act/h_out_ratio/layer_1",
        "reshape/attn_bloat_t0/layer_1",
    } <= set(logged)


@pytest.mark.parametrize("name", [n for n in ARMS if n != "softmax"])
def test_arm_honours_the_padding_mask(name):
    model = armed(name, "llama", 2, "sdpa")
    seq = TOKENS[:1, :8]
    padded = torch.cat([torch.full((1, 4), 5), seq], dim=1)
    mask = torch.cat([torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 8, dtype=torch.long)], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        alone = model(seq).logits
        with_pad = model(padded, attention_mask=mask, position_ids=positions).logits
    assert with_pad.isfinite().all()
    torch.testing.assert_close(with_pad[:, 4:], alone, rtol=1e-7, atol=1e-7)


def test_a_key_slot_keeps_the_fused_causal_path_and_equals_the_explicit_mask():
    """`slot_attention` on causal rows without a mask (SDPA's is_causal path, a dummy query in
    front) gives what the same keys give under the explicit causal mask with the slot column."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from vscale.model.interventions.masking import additive, allowed_keys, slot_attention, with_slot

    torch.manual_seed(0)
    q = torch.randn(2, 4, 8, 8, dtype=torch.float64)  # 8 queries; 9 keys and values, the slot first
    k, v = (torch.randn(2, 4, 9, 8, dtype=torch.float64) for _ in range(2))
    module = torch.nn.Module()
    module.is_causal = True
    fast, _ = slot_attention(module, q, k, v, None, sdpa_attention_forward, scaling=0.3, dropout=0.0)
    mask = additive(with_slot(allowed_keys(None, 8, 8, q.device)), q.dtype)
    explicit, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=0.3, dropout=0.0)
    torch.testing.assert_close(fast, explicit, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in ARMS if n != "softmax"])
def test_arm_is_causal(name):
    model = armed(name)
    changed = TOKENS.clone()
    changed[:, 8] = (changed[:, 8] + 1) % 97
    with torch.no_grad():
        a, b = model(TOKENS).logits, model(changed).logits
    torch.testing.assert_close(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:], atol=1e-3)


def test_diff_sub_heads_keep_relative_positions():
    """Each sub-head takes whole RoPE rotation pairs, so its scores depend on q and k's distance only."""
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    from vscale.model.interventions.diff import sub_heads

    model = tiny_model()
    rope = LlamaRotaryEmbedding(model.config)
    q, k = torch.randn(2, 1, 1, 1, 16, dtype=torch.float64).unbind(0)

    def scores(q_pos: int, k_pos: int) -> list[float]:
        cos, sin = rope(q.float(), torch.tensor([[q_pos, k_pos]]))
        q_rot, _ = apply_rotary_pos_emb(q, q, cos[:, :1].double(), sin[:, :1].double())
        k_rot, _ = apply_rotary_pos_emb(k, k, cos[:, 1:].double(), sin[:, 1:].double())
        return [(a * b).sum().item() for a, b in zip(sub_heads(q_rot), sub_heads(k_rot))]

    assert scores(9, 4) == pytest.approx(scores(30, 25), rel=1e-5)  # RoPE's cos/sin are float32
    assert scores(9, 4) != pytest.approx(scores(9, 5), rel=1e-3)


@pytest.mark.parametrize("name", [n for n in ARMS if n != "softmax"])
def test_arm_parameters_survive_save_and_from_pretrained(tmp_path, name):
    model = armed(name, seed=3).float()
    save_pretrained(model, tmp_path)
    loaded = from_pretrained(str(tmp_path))
    with torch.no_grad():
        torch.testing.assert_close(loaded(TOKENS).logits, model(TOKENS).logits)


@pytest.mark.parametrize("name", [n for n in ARMS if n != "softmax"])
def test_arm_retrofits_a_pretrained_model_keeping_its_weights(tmp_path, name):
    from transformers import AutoModelForCausalLM

    from vscale.train.module import VScaleLM

    path = save_tiny_pretrained(tmp_path / "pretrained")
    lm = VScaleLM(pretrained=str(path), attention=name, vscale="learned")
    original = AutoModelForCausalLM.from_pretrained(path).state_dict()
    state = lm.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in original.items())
    assert attention_arm(lm.model) == name
    loss = lm.loss(TOKENS)
    loss.backward()
    assert loss.isfinite() and all(p.grad is not None for n, p in lm.model.named_parameters() if ".arm." in n)


@pytest.mark.parametrize("name", [n for n in ARMS if n != "softmax"])
def test_arm_trains_the_tiny_config_with_every_diagnostic_and_learned_vscale(tmp_path, name):
    train(
        tmp_path,
        f"--model.attention={name}",
        "--model.vscale=learned",
        "--trainer.max_steps=20",
        "--run.val_every_n_steps=20",
        "--trainer.log_every_n_steps=1",
        "--data.seq_len=64",
        "--data.batch_size=8",
        "--trainer.limit_val_batches=1",
    )
    run = tmp_path / "tiny" / f"{name}-learned-seed0"
    loss = metrics(run, "train/loss")
    assert len(loss) == 20 and loss[19] < loss[0] - 0.5
    header = open(run / "metrics.csv").readline().strip().split(",")
    for column in (
        "sink/alpha/layer_3",
        "sink/rate/layer_3",
        "gsink/ratio/layer_3",
        "act/h_out_ratio/layer_3",
        "vscale/lambda_median/layer_3",
    ):
        assert column in header, column
    assert ("sink/extra_mass/layer_0" in header) == (name in WITH_EXTRA)
    assert all(math.isfinite(v) for v in metrics(run, "sink/alpha/layer_0").values())


@pytest.mark.parametrize("name", [n for n in ARMS if n != "softmax"])
def test_arm_run_resumes_exactly(tmp_path, name):
    common = [
        f"--model.attention={name}",
        "--trainer.log_every_n_steps=1",
        "--run.ckpt_every=4",
        "--run.val_every_n_steps=4",
        "--data.seq_len=64",
        "--data.batch_size=4",
        "--trainer.limit_val_batches=1",
        "--trainer.callbacks=[]",
    ]
    train(tmp_path / "straight", "--trainer.max_steps=8", *common)
    train(tmp_path / "resumed", "--trainer.max_steps=4", *common)
    train(tmp_path / "resumed", "--trainer.max_steps=8", "--ckpt_path=last", *common)
    straight = metrics(tmp_path / "straight" / "tiny" / f"{name}-off-seed0", "train/loss")
    resumed = metrics(tmp_path / "resumed" / "tiny" / f"{name}-off-seed0", "train/loss")
    assert sorted(resumed) == list(range(8))
    for step in range(4, 8):
        assert resumed[step] == pytest.approx(straight[step], rel=1e-6, abs=1e-6), step


@pytest.mark.parametrize("name", [n for n in ARMS if ARMS[n].kernels])
def test_arm_on_a_kernel_it_cannot_use_is_refused_naming_both_fields(name):
    from vscale.train.module import VScaleLM

    with pytest.raises(
        ValueError,
        match=f"model.attention='{name}' runs on model.attn_implementation sdpa or eager, not 'flex_attention'",
    ):
        VScaleLM(
            model_config={"model_type": "llama", "vocab_size": 97, "hidden_size": 64, "num_attention_heads": 4},
            attention=name,
            attn_implementation="flex_attention",
        )


def test_diff_on_a_head_dim_not_divisible_by_4_is_refused_before_the_model_is_built():
    from vscale.train.module import VScaleLM

    with pytest.raises(ValueError, match=r"model.attention='diff'.*head_dim \(6\) must be divisible by 4"):
        VScaleLM(
            model_config={"model_type": "llama", "vocab_size": 97, "hidden_size": 24, "num_attention_heads": 4},
            attention="diff",
        )


def test_frozen_arm_parameters_in_a_fine_tune_are_refused(tmp_path):
    from vscale.train.module import VScaleLM

    path = save_tiny_pretrained(tmp_path / "pretrained")
    with pytest.raises(
        ValueError, match=r"model.trainable=\['\*.vscale.theta'\] leaves model.attention='gated'.*'\*.arm.\*'"
    ):
        VScaleLM(pretrained=str(path), attention="gated", vscale="learned", trainable=["*.vscale.theta"])


@pytest.mark.parametrize("value", ["Gated", "softmax+1", ""])
def test_unknown_arm_is_refused(value):
    from vscale.train.module import VScaleLM

    with pytest.raises(
        ValueError, match="unknown attention arm.*choose one of softmax, gated, sink_logit, softpick, kv_bias, diff"
    ):
        VScaleLM(model_config={"model_type": "llama", "vocab_size": 97}, attention=value)


def test_every_arm_implements_the_arm_interface_and_none_extends_another():
    assert {name: cls.__bases__ for name, cls in ARMS.items()} == {name: (Arm,) for name in ARMS}


def test_an_arm_without_its_token0_weights_cannot_be_made():
    """The diagnostics read every arm's own weights on token 0: an arm must say what they are."""

    class Unmeasured(Arm):
        name = "unmeasured"

        @classmethod
        def build(cls, config, layer_index):
            return cls()

        def forward(self, module, query, key, value, attention_mask, kernel, **kwargs):
            return kernel(module, query, key, value, attention_mask, **kwargs)

    with pytest.raises(TypeError, match="token0"):
        Unmeasured()


def test_an_arm_and_vscale_switch_the_model_to_the_pipeline_once(monkeypatch):
    model = tiny_model()
    switched, switch = [], model.set_attn_implementation
    monkeypatch.setattr(model, "set_attn_implementation", lambda name: switched.append(name) or switch(name))
    apply_interventions(model, "learned", "gated")
    assert switched == ["vscale_sdpa"]
