"""The diagnostics of method §3 (docs/method.md) against independent computations: the materialised eager attention
matrix, and gradients captured separately with autograd."""

import pytest
import torch
from conftest import tiny_model

from vscale import apply_vscale
from vscale.diagnostics import diagnose
from vscale.diagnostics.metrics import sink, sink_row_sums, summarise
from vscale.model.lse import attention_to_token0, fused_lse, recomputed_lse, unless_unavailable

T = 40
TOKENS = torch.randint(0, 97, (3, T), generator=torch.Generator().manual_seed(1))


def sharpened(arch, kv, attn="sdpa", mode="off"):
    """A random model whose attention is far from uniform (q/k weights scaled up)."""
    model = tiny_model(arch, kv, attn=attn)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(6.0)
            layer.self_attn.k_proj.weight.mul_(6.0)
    return apply_vscale(model, mode)


def eager_attentions(arch, kv, mode="off"):
    model = sharpened(arch, kv, attn="eager", mode=mode)
    with torch.no_grad():
        return model(TOKENS, output_attentions=True).attentions


@pytest.mark.parametrize("fused", [True, False], ids=["fused-lse", "recomputed-lse"])
def test_attention_to_token0_matches_the_materialised_matrix(arch_heads, fused):
    arch, kv = arch_heads
    model = sharpened(arch, kv)
    captured = []
    for layer in model.model.layers:
        layer.self_attn.diagnostics_tap = lambda arm, q, k, v, s: captured.append(
            attention_to_token0(q, k, s, fused=fused)
        )
    with torch.no_grad():
        model(TOKENS)
    for a0, attn in zip(captured, eager_attentions(arch, kv)):
        assert torch.allclose(a0, attn[..., 0], atol=1e-6)


def test_recomputed_lse_in_small_chunks_matches_the_fused_kernel():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 4, 50, 8, generator=g), torch.randn(2, 2, 50, 8, generator=g)
    assert torch.allclose(recomputed_lse(q, k, 0.35, max_elements=97), fused_lse(q, k, 0.35), atol=1e-5)


def test_the_fused_lse_falls_back_only_where_no_kernel_applies():
    """The CUDA path's guard: a kernel that refuses the inputs gives None (the chunked recomputation follows);
    running out of memory is raised, since the fallback needs more memory."""

    def refuses(*args):
        raise RuntimeError("No available kernel. Aborting execution.")

    def out_of_memory(*args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    assert unless_unavailable(refuses) is None
    with pytest.raises(torch.OutOfMemoryError):
        unless_unavailable(out_of_memory)
    assert unless_unavailable(lambda x: x + 1, 1) == 2


def test_sink_metrics_match_the_materialised_matrix(arch_heads):
    arch, kv = arch_heads
    metrics = diagnose(sharpened(arch, kv, mode="learned"), TOKENS)
    for l, attn in enumerate(eager_attentions(arch, kv, mode="learned")):
        a0 = attn[..., 0].double()  # (batch, heads, queries)
        alpha = a0[:, :, :64].mean(dim=(0, 2))
        assert metrics[f"sink/alpha/layer_{l}"] == pytest.approx(alpha.mean().item(), abs=1e-6)
        assert metrics[f"sink/rate/layer_{l}"] == pytest.approx((alpha > 0.3).double().mean().item())
        assert metrics[f"sink/mass/layer_{l}"] == pytest.approx(a0.sum(-1).mean().item() / T, abs=1e-6)
        assert metrics[f"sink/m2/layer_{l}"] == pytest.approx(a0.pow(2).sum(-1).mean().item() / T, abs=1e-6)
        assert metrics[f"sink/m0/layer_{l}"] == pytest.approx(a0.sum(-1).mean().item(), rel=1e-5)
        assert metrics[f"sink/s0/layer_{l}"] == pytest.approx(a0.pow(2).sum(-1).mean().item(), rel=1e-5)


def test_per_head_alpha_m0_and_s0_match_the_materialised_matrix():
    """The (layers x heads) grids of diagnose_batches, pooled over two batches, against eager attention."""
    from vscale.diagnostics import diagnose_batches

    heads = diagnose_batches(sharpened("llama", 2, mode="learned"), [TOKENS[:2], TOKENS[2:]])[2]
    for l, attn in enumerate(eager_attentions("llama", 2, mode="learned")):
        a0 = attn[..., 0].double()  # (rows, heads, queries)
        for name, expected in (
            ("sink/alpha", a0[:, :, :64].mean(dim=(0, 2))),
            ("sink/m0", a0.sum(-1).mean(0)),
            ("sink/s0", a0.pow(2).sum(-1).mean(0)),
        ):
            assert heads[name][l] == pytest.approx(expected.tolist(), rel=1e-5, abs=1e-7), (name, l)


def test_a_one_layer_model_is_diagnosed_per_layer():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=97,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=64,
        )
    )
    metrics = diagnose(model, TOKENS)
    assert metrics["gsink/ratio/layer_0"] == metrics["gsink/ratio/median"] > 0 and "sink/alpha/layer_1" not in metrics


def test_sink_rate_counts_heads_whose_alpha_exceeds_eps():
    a0 = torch.zeros(2, 4, 80)
    a0[:, 0] = 0.9
    a0[:, 1, :64] = 0.31
    a0[:, 2, :64] = 0.29
    a0[:, 3, 64:] = 1.0  # beyond T_eps: not part of alpha
    sums = sink_row_sums(a0)
    stats = sink(*(sums[k] / 2 for k in ("alpha", "mass", "m2", "m0", "s0")))
    assert stats["rate"].item() == pytest.approx(0.5)
    assert stats["alpha"].item() == pytest.approx((0.9 + 0.31 + 0.29 + 0.0) / 4)
    assert stats["m0"].item() == pytest.approx((0.9 * 80 + 0.31 * 64 + 0.29 * 64 + 16) / 4)


class Captured:
    """Independent capture: full tensors with retain_grad, one plain backward."""

    def __init__(self, model):
        self.t = [{} for _ in model.model.layers]
        for rec, layer in zip(self.t, model.model.layers):
            layer.input_layernorm.register_forward_hook(self.keep(rec, "h", "h_tilde"))
            layer.post_attention_layernorm.register_forward_hook(self.keep(rec, "h_half", "h_tilde_half"))
            layer.register_forward_hook(self.keep(rec, None, "h_out"))
            layer.mlp.register_forward_hook(self.keep(rec, None, "r_mlp"))
            for p in "qkv":
                getattr(layer.self_attn, f"{p}_proj").register_forward_hook(self.keep(rec, None, p))

    @staticmethod
    def keep(rec, in_name, out_name):
        def hook(module, args, out):
            if in_name:
                rec[in_name] = args[0]
                args[0].retain_grad()
            out.retain_grad()
            rec[out_name] = out

        return hook


def bnorm(x):
    """Batch mean of per-token norms: (batch, tokens, dim) -> (tokens,)."""
    return x.detach().norm(dim=-1).mean(0)


@pytest.fixture
def measured(arch_heads):
    arch, kv = arch_heads
    model = sharpened(arch, kv, mode="learned")
    metrics = diagnose(model, TOKENS)
    captured = Captured(model)
    model(input_ids=TOKENS, labels=TOKENS).loss.backward()
    return model, metrics, captured.t


def test_gradient_sink_ratio_matches_autograd(measured):
    _, metrics, layers = measured
    for l, t in enumerate(layers):
        g = bnorm(t["h_tilde"].grad)
        assert metrics[f"gsink/ratio/layer_{l}"] == pytest.approx((g[0] / g[1:32].mean()).item(), rel=1e-5)
    ratios = torch.tensor([metrics[f"gsink/ratio/layer_{l}"] for l in range(len(layers))])
    assert metrics["gsink/ratio/median"] == pytest.approx(ratios.quantile(0.5).item(), rel=1e-6)


def test_batch_summed_gradient_sink_ratio_matches_autograd(measured):
    """The paper's variant: gradients summed over the batch before the norm."""
    _, metrics, layers = measured
    for l, t in enumerate(layers):
        g = t["h_tilde"].grad.sum(0).norm(dim=-1)
        assert metrics[f"gsink/ratio_summed/layer_{l}"] == pytest.approx((g[0] / g[1:32].mean()).item(), rel=1e-5)


def test_path_terms_match_autograd_and_sum_to_the_input_gradient(measured):
    model, metrics, layers = measured
    for l, (t, layer) in enumerate(zip(layers, model.model.layers)):
        terms = {p: t[p].grad @ getattr(layer.self_attn, f"{p}_proj").weight.detach() for p in "qkv"}
        assert torch.allclose(terms["q"] + terms["k"] + terms["v"], t["h_tilde"].grad, atol=1e-9, rtol=1e-4)
        for p, term in terms.items():
            n = bnorm(term)
            assert metrics[f"gsink/{p}_t0/layer_{l}"] == pytest.approx(n[0].item(), rel=1e-5, abs=1e-12)
            assert metrics[f"gsink/{p}_early/layer_{l}"] == pytest.approx(n[1:32].mean().item(), rel=1e-5)


def test_query_path_gradient_at_token0_is_exactly_zero_with_the_eager_kernel(arch_heads):
    metrics = diagnose(sharpened(*arch_heads, attn="eager", mode="learned"), TOKENS)
    for l in range(2):
        assert metrics[f"gsink/q_t0/layer_{l}"] == 0.0
        assert metrics[f"gsink/q_early/layer_{l}"] > 0.0


def test_query_path_gradient_at_token0_is_round_off_with_fused_sdpa(measured):
    """SDPA's backward forms rowsum(dO*O) apart from dP, so the exact zero becomes round-off."""
    _, metrics, layers = measured
    for l in range(len(layers)):
        assert metrics[f"gsink/q_t0/layer_{l}"] < 1e-6 * metrics[f"gsink/q_early/layer_{l}"]


def test_g3_is_the_rmsnorm_vjp_of_g2(measured):
    """g3 = dL/dh - dL/dh_half equals J_RMSNorm(h)^T dL/dh~ (docs/method.md §3), for both branches."""
    model, _, layers = measured
    for t, layer in zip(layers, model.model.layers):
        for norm, x, x_tilde, after in (
            (layer.input_layernorm, "h", "h_tilde", "h_half"),
            (layer.post_attention_layernorm, "h_half", "h_tilde_half", "h_out"),
        ):
            g3 = t[x].grad - t[after].grad
            w, eps = norm.weight.detach(), norm.variance_epsilon
            rms_norm = lambda h: w * h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
            _, vjp = torch.autograd.functional.vjp(rms_norm, t[x].detach(), t[x_tilde].grad)
            assert torch.allclose(g3, vjp, atol=1e-5 * g3.abs().max().item(), rtol=1e-4)


def test_reshaping_ratios_match_autograd(measured):
    _, metrics, layers = measured
    for l, t in enumerate(layers):
        for branch, (x, x_tilde, after) in {
            "attn": ("h", "h_tilde", "h_half"),
            "mlp": ("h_half", "h_tilde_half", "h_out"),
        }.items():
            g1, g2 = t[after].grad[:, :16], t[x_tilde].grad[:, :16]
            g3 = t[x].grad[:, :16] - g1
            ratios = {
                "bloat": bnorm(g2) / bnorm(g1),
                "compress": bnorm(g3) / bnorm(g2),
                "change": bnorm(g1 + g3) / bnorm(g1),
            }
            for name, r in ratios.items():
                assert metrics[f"reshape/{branch}_{name}_t0/layer_{l}"] == pytest.approx(r[0].item(), rel=1e-5)
                assert metrics[f"reshape/{branch}_{name}_early/layer_{l}"] == pytest.approx(
                    r[1:].mean().item(), rel=1e-5
                )


def test_activation_norms_match_captured_tensors(measured):
    _, metrics, layers = measured
    for l, t in enumerate(layers):
        for name in ("h", "h_half", "h_out", "r_mlp"):
            n = bnorm(t[name])
            assert metrics[f"act/{name}_t0/layer_{l}"] == pytest.approx(n[0].item(), rel=1e-5)
            assert metrics[f"act/{name}_ratio/layer_{l}"] == pytest.approx((n[0] / n[1:16].mean()).item(), rel=1e-5)
        r_attn = bnorm(t["h_half"] - t["h"])
        assert metrics[f"act/r_attn_t0/layer_{l}"] == pytest.approx(r_attn[0].item(), rel=1e-4)
        v = t["v"].detach().unflatten(-1, (-1, 16)).norm(dim=-1).mean(dim=(0, 2))
        assert metrics[f"act/v_ratio/layer_{l}"] == pytest.approx((v[0] / v[1:16].mean()).item(), rel=1e-5)


def test_learned_lambda_distribution_is_reported(measured):
    model, metrics, _ = measured
    with torch.no_grad():
        model.model.layers[1].self_attn.vscale.theta.copy_(torch.linspace(-1.0, 1.0, model.config.num_key_value_heads))
    metrics = diagnose(model, TOKENS)
    assert metrics["vscale/lambda_min/layer_1"] == pytest.approx(torch.e**-1, rel=1e-6)
    assert metrics["vscale/lambda_max/layer_1"] == pytest.approx(torch.e, rel=1e-6)
    assert metrics["vscale/lambda_median/layer_0"] == pytest.approx(1.0)


def test_diagnose_leaves_parameter_gradients_and_an_unpatched_model_untouched():
    model = tiny_model()
    before = model(TOKENS).logits
    diagnose(model, TOKENS)
    assert all(p.grad is None for p in model.parameters())
    assert model.config._attn_implementation == "sdpa"
    assert not any(hasattr(layer.self_attn, "vscale") for layer in model.model.layers)
    assert torch.equal(model(TOKENS).logits, before)


def test_diagnose_refuses_rows_shorter_than_the_early_window():
    with pytest.raises(ValueError, match="at least 32 tokens"):
        diagnose(tiny_model(), TOKENS[:, :20])


def test_diagnose_under_bf16_autocast_stays_close_to_fp32():
    model = sharpened("llama", 2, mode="learned")
    fp32 = diagnose(model, TOKENS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = diagnose(model, TOKENS)
    for name in (
        "gsink/ratio/layer_1",
        "sink/alpha/layer_0",
        "act/h_out_ratio/layer_1",
        "reshape/attn_bloat_t0/layer_1",
    ):
        assert bf16[name] == pytest.approx(fp32[name], rel=0.1), name


def test_gradient_norms_cover_every_token_and_agree_with_autograd(measured):
    from vscale.diagnostics import diagnose_batches

    model, _, layers = measured
    norms = diagnose_batches(model, [TOKENS])[1]
    assert norms.shape == (2, 3, T)
    for l, t in enumerate(layers):
        assert torch.allclose(norms[l], t["h_tilde"].grad.norm(dim=-1), rtol=1e-5)


def test_statistics_over_batches_pool_rows_before_taking_ratios():
    """Two batches whose own ratios differ (random rows; rows of one repeated token): every metric
    over both equals the metric of the rows pooled, here one batch holding all four rows with the
    same per-row gradient scale (equal batch sizes), and not the mean of the two batches' metrics."""
    from vscale.diagnostics import diagnose_batches

    model = sharpened("llama", 2, mode="learned")
    varied, repeated = TOKENS[:2], torch.full((2, T), 5)
    pooled = diagnose_batches(model, [varied, repeated])[0]
    one_batch = diagnose(model, torch.cat([varied, repeated]))
    each = [diagnose(model, b) for b in (varied, repeated)]
    for name, value in one_batch.items():
        absolute_gradient = name.split("/")[0] == "gsink" and name.split("/")[1].endswith(("_t0", "_early"))
        scale = (
            2.0 if absolute_gradient else 1.0
        )  # a 2-row batch's mean loss gives each row twice a 4-row batch's gradient
        assert pooled[name] == pytest.approx(scale * value, rel=1e-4, abs=1e-7), name
    differs = [
        n
        for n in ("gsink/ratio/layer_1", "act/h_out_ratio/layer_1", "sink/rate/layer_0", "gsink/ratio/median")
        if pooled[n] != pytest.approx((each[0][n] + each[1][n]) / 2, rel=1e-3)
    ]
    assert len(differs) >= 3, differs


def test_the_fit_end_summary_names_the_layer_with_the_largest_alpha_and_its_sink_measures():
    from vscale.train.callbacks.diagnostics import summary

    metrics = {
        f"{name}/layer_{l}": value
        for name, values in {
            "sink/alpha": (0.1, 0.7, 0.2),
            "sink/rate": (0.0, 1.0, 0.0),
            "gsink/ratio": (3.0, 115.0, 2.0),
            "act/v_ratio": (0.9, 0.15, 0.8),
        }.items()
        for l, value in enumerate(values)
    }
    line = summary({**metrics, "sink/alpha/max": 0.7}, 399)
    assert line.startswith("diagnostics at step 399, layer 1 ")
    assert "alpha 0.7," in line and "sink rate 1," in line and "R_GS 115," in line and "value ratio 0.15 " in line


def test_layer_summaries_skip_layers_where_a_quantity_is_undefined():
    """R_GS is 0/0 in a layer whose attention gives no token weight; mean, median, max and IQR are
    taken over the other layers, and are NaN only where no layer has a value."""
    table = torch.tensor([[float("nan"), 468.0, 538.0, 2.0], [float("nan")] * 4])
    s = summarise(table)
    defined = torch.tensor([468.0, 538.0, 2.0])
    assert s["mean"][0] == pytest.approx(defined.mean().item())
    assert s["median"][0] == 468.0 and s["max"][0] == 538.0
    assert s["iqr"][0] == pytest.approx((torch.quantile(defined, 0.75) - torch.quantile(defined, 0.25)).item())
    assert all(v[1].isnan() for v in s.values())
