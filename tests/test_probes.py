"""`eval.py truncate` and `eval.py interpolate` (vscale.probes) against a hand-written forward of small
Llama models that materialises every attention matrix, V-scale included; then the subcommands end to
end on a baseline / V-scale pair of Hugging Face directories."""

import json
import math

import pytest
import torch
from conftest import save_tiny_pretrained

import vscale
from vscale.eval import cli as eval_cli
from vscale.eval.interpolate import InterpolateOptions
from vscale.eval.probes.interpolate import interpolate, progress, steepest
from vscale.eval.probes.truncate import attended_distance, truncation
from vscale.eval.truncate import TruncateOptions
from vscale.model import vscale_modules

SIGMA = 0.02  # method §2


def small_llama(layers: int, thetas=(0.5, -1.0)):
    """A random Llama (4 query heads of dim 8, 2 kv heads) with learned V-scale at the given theta per kv
    head, and sharpened q/k weights so that attention is far from uniform."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=64,
    )
    model = vscale.apply_vscale(LlamaForCausalLM(config).eval(), "learned")
    with torch.no_grad():
        for layer, scaler in zip(model.model.layers, vscale_modules(model)):
            layer.self_attn.q_proj.weight.mul_(4.0)
            layer.self_attn.k_proj.weight.mul_(4.0)
            scaler.theta.copy_(torch.tensor(thetas))
    return model


def rms(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate(x, positions, base):
    """RoPE as Llama applies it: the two halves of each head rotated by position * base^(-2i/d)."""
    d = x.shape[-1]
    freqs = positions[:, None].double() * base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    cos, sin = torch.cat([freqs, freqs], -1).cos(), torch.cat([freqs, freqs], -1).sin()
    return x * cos + torch.cat([-x[..., d // 2 :], x[..., : d // 2]], -1) * sin


def hand_forward(
    model, embeds: torch.Tensor, allowed: torch.Tensor, replace: tuple[int, int, torch.Tensor] | None = None
) -> list[dict]:
    """Every layer in float64 from the weights alone: (rows, T, d) input embeddings, a (T, T) boolean
    `allowed[t, j]` (query t may attend key j), and optionally (layer, position, vectors) putting
    vectors (rows, d) into the residual entering that layer at that position. Per layer: the
    attention weights a (rows, heads, T, T), each head's output W_O[:, h] y_h (rows, heads, T, d), the
    MLP output and h_out."""
    c = model.config
    H, KV, d, eps = c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.rms_norm_eps
    W = lambda m: m.weight.detach().double()
    h, T = embeds.double(), embeds.shape[1]
    positions = torch.arange(T)
    out = []
    for index, (layer, scaler) in enumerate(zip(model.model.layers, vscale_modules(model))):
        if replace is not None and replace[0] == index:
            h = h.clone()
            h[:, replace[1]] = replace[2].double()
        attn = layer.self_attn
        x = rms(h, W(layer.input_layernorm), eps)
        split = lambda y, n: y.view(y.shape[0], T, n, d).transpose(1, 2)
        q = rotate(split(x @ W(attn.q_proj).T, H), positions, c.rope_parameters["rope_theta"])
        k = rotate(split(x @ W(attn.k_proj).T, KV), positions, c.rope_parameters["rope_theta"])
        v = split(x @ W(attn.v_proj).T, KV)
        r = v.pow(2).sum(-1, keepdim=True)
        C = c.hidden_size * d * SIGMA**2 * scaler.theta.detach().double().exp()[None, :, None, None]
        v = r / (r + C) * v  # V-scale, method §2
        group = H // KV
        scores = q @ k.repeat_interleave(group, 1).transpose(-1, -2) / math.sqrt(d)
        a = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
        y = a @ v.repeat_interleave(group, 1)  # (rows, heads, T, d)
        heads = torch.stack([y[:, i] @ W(attn.o_proj)[:, i * d : (i + 1) * d].T for i in range(H)], 1)
        h_half = h + heads.sum(1)
        z = rms(h_half, W(layer.post_attention_layernorm), eps)
        mlp = (torch.nn.functional.silu(z @ W(layer.mlp.gate_proj).T) * (z @ W(layer.mlp.up_proj).T)) @ W(
            layer.mlp.down_proj
        ).T
        h = h_half + mlp
        out.append({"a": a, "heads": heads, "mlp": mlp, "h_out": h})
    return out


def band(T: int, k: int | None = None) -> torch.Tensor:
    """allowed[t, j]: j <= t, and t - j < k when a window k is given."""
    t = torch.arange(T)
    allowed = t[None, :] <= t[:, None]
    return allowed if k is None else allowed & (t[:, None] - t[None, :] < k)


IDS = torch.randint(0, 97, (2, 24), generator=torch.Generator().manual_seed(3))


def band_with_sink(T: int, k: int) -> torch.Tensor:
    """allowed[t, j]: the window of `band`, and token 0 for every query."""
    allowed = band(T, k)
    allowed[:, 0] = True
    return allowed


@pytest.mark.parametrize("keep_sink", [False, True], ids=["window", "window-and-token-0"])
def test_truncation_is_one_minus_cosine_against_a_hand_forward_with_a_sliding_window(keep_sink):
    """Over every query whose context the window cuts (t >= k), by default; with token 0 kept in every window too."""
    model, windows = small_llama(2), [1, 3, 8]
    embeds = model.model.embed_tokens.weight.detach()[IDS]
    full = hand_forward(model, embeds, band(24))
    measured = truncation(model, [IDS], windows, keep_sink=keep_sink)
    common = truncation(model, [IDS], windows, keep_sink=keep_sink, common=True)
    assert list(measured) == windows
    for k in windows:
        cut = hand_forward(model, embeds, band_with_sink(24, k) if keep_sink else band(24, k))
        for l in range(2):
            for start, got in ((k, measured[k][l]), (8, common[k][l])):
                cos = torch.nn.functional.cosine_similarity(
                    full[l]["h_out"][:, start:], cut[l]["h_out"][:, start:], dim=-1
                )
                assert got == pytest.approx((1 - cos).mean().item(), rel=1e-4, abs=1e-7), (k, l, start)
    assert common[1][1] > common[3][1] > common[8][1] > 0  # less context, further from the full stream


def test_the_window_keeps_token_0_only_for_queries_within_k():
    """Queries t < k still see token 0 and their whole context: the window changes nothing there."""
    from vscale.eval.probes.attention import layer_outputs
    from vscale.eval.probes.truncate import banded_causal_mask

    model = small_llama(1)
    full, cut = layer_outputs(model, IDS), layer_outputs(model, IDS, banded_causal_mask(24, 5, torch.float32))
    assert torch.allclose(full[:, :, :5], cut[:, :, :5], atol=1e-6) and not torch.allclose(
        full[:, :, 5:], cut[:, :, 5:], atol=1e-4
    )


def test_attended_distance_matches_the_hand_attention_and_restores_the_kernel():
    model = small_llama(2)
    attention = model.config._attn_implementation
    measured = attended_distance(model, [IDS[:1], IDS[1:]])
    t = torch.arange(24, dtype=torch.float64)
    for l, layer in enumerate(hand_forward(model, model.model.embed_tokens.weight.detach()[IDS], band(24))):
        expected = (layer["a"] * (t[:, None] - t[None, :]).clamp_min(0)).sum(-1).mean(dim=(0, 2))
        assert measured[l].tolist() == pytest.approx(expected.tolist(), rel=1e-5)
    assert model.config._attn_implementation == attention == "vscale_sdpa"


def test_interpolation_at_a_later_layer_matches_a_hand_forward_of_each_point():
    model, steps, layer = small_llama(2), 5, 1
    prompt_a, prompt_b = IDS[0].tolist(), IDS[1, :20].tolist()
    result = interpolate(model, prompt_a, prompt_b, layer, -1, steps)
    assert (result["position"], result["position_b"], result["alphas"]) == (23, 19, [0.0, 0.25, 0.5, 0.75, 1.0])
    embed = model.model.embed_tokens.weight.detach()
    h_a = hand_forward(model, embed[torch.tensor([prompt_a])], band(24))[0]["h_out"][
        0, 23
    ]  # the residual entering layer 1
    h_b = hand_forward(model, embed[torch.tensor([prompt_b])], band(20))[0]["h_out"][0, 19]
    alphas = torch.tensor(result["alphas"], dtype=torch.float64)
    path = (1 - alphas[:, None]) * h_a + alphas[:, None] * h_b
    hand = hand_forward(model, embed[torch.tensor([prompt_a] * steps)], band(24), replace=(layer, 23, path))[layer]

    def check(measured, outputs):
        span = outputs[-1] - outputs[0]
        moved = ((outputs - outputs[0]) @ span) / span.dot(span)
        assert measured["norm"] == pytest.approx(outputs.norm(dim=-1).tolist(), rel=1e-4)
        assert measured["progress"] == pytest.approx(moved.tolist(), rel=1e-3, abs=1e-4)
        assert measured["steepest"] == pytest.approx((moved.diff().abs() / 0.25).max().item(), rel=1e-3)

    for h, head in enumerate(result["heads"]):
        check(head, hand["heads"][:, h, 23])
        assert head["attention_to_token0"] == pytest.approx(hand["a"][:, h, 23, 0].tolist(), rel=1e-4, abs=1e-7)
    check(result["mlp"], hand["mlp"][:, 23])
    check(result["residual"], hand["h_out"][:, 23])


def test_the_path_records_the_attention_row_to_targets_every_later_layer_and_the_logits():
    model, steps, layer, targets = small_llama(2), 4, 0, [0, 5, -2]
    prompt_a, prompt_b = IDS[0].tolist(), IDS[1].tolist()
    result = interpolate(model, prompt_a, prompt_b, layer, 20, steps, targets)
    embed = model.model.embed_tokens.weight.detach()
    h_a, h_b = (
        embed[prompt_a[20]].double(),
        embed[prompt_b[20]].double(),
    )  # the residual entering layer 0 is the embedding
    alphas = torch.tensor(result["alphas"], dtype=torch.float64)
    hand = hand_forward(
        model,
        embed[torch.tensor([prompt_a] * steps)],
        band(24),
        replace=(layer, 20, (1 - alphas[:, None]) * h_a + alphas[:, None] * h_b),
    )
    assert result["targets"] == [0, 5, 22]
    for h, head in enumerate(result["heads"]):
        for t in (0, 5, 22):
            assert head["attention"][str(t)] == pytest.approx(hand[0]["a"][:, h, 20, t].tolist(), rel=1e-4, abs=1e-7), (
                h,
                t,
            )
    assert [entry["layer"] for entry in result["layers"]] == [0, 1]
    for l, entry in enumerate(result["layers"]):
        assert entry["norm"] == pytest.approx(hand[l]["h_out"][:, 20].norm(dim=-1).tolist(), rel=1e-4)
    c = model.config
    logits = (
        rms(hand[1]["h_out"][:, 20], model.model.norm.weight.detach().double(), c.rms_norm_eps)
        @ model.lm_head.weight.detach().double().T
    )
    assert result["logits"]["norm"] == pytest.approx(logits.norm(dim=-1).tolist(), rel=1e-4)
    assert result["logits"]["top_token"] == logits.argmax(-1).tolist()


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_an_aligned_endpoints_query_points_at_the_chosen_key(arch):
    """Through RMSNorm, W_Q, Qwen3's q_norm and RoPE: the query at the position, with the constructed residual put
    there, is parallel to the key of the chosen position in every head (W_Q is square here, so exactly)."""
    from conftest import tiny_model

    from vscale.eval.probes.interpolate import _run_path, aligned_residual
    from vscale.model.pipeline import TAP, route_through_pipeline

    model = tiny_model(arch, kv_heads=2)
    prompt, layer, position, key = IDS[0].tolist(), 1, 20, 7
    h = aligned_residual(model, prompt, layer, position, key)
    captured = {}
    route_through_pipeline(model)
    attn = model.model.layers[layer].self_attn
    setattr(
        attn, TAP, lambda arm, q, k, v, scaling: captured.update(q=q[0, :, position].double(), k=k[0, :, key].double())
    )
    try:
        _run_path(model, prompt, layer, position, h[None])
    finally:
        delattr(attn, TAP)
    cos = torch.nn.functional.cosine_similarity(captured["q"], captured["k"].repeat_interleave(2, dim=0), dim=-1)
    assert torch.allclose(cos, torch.ones(4, dtype=torch.float64), atol=1e-4), cos


def test_progress_follows_alpha_on_a_linear_path_and_is_none_for_a_constant_one():
    alphas = torch.linspace(0, 1, 6, dtype=torch.float64)
    line = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + alphas[:, None] * torch.tensor(
        [3.0, 1.0, -1.0], dtype=torch.float64
    )
    assert progress(line) == pytest.approx(alphas.tolist()) and steepest(progress(line), alphas) == pytest.approx(1.0)
    assert progress(torch.ones(6, 3)) == [None] * 6 and steepest([None] * 6, alphas) is None


TEXT = dict(tokenizer="assets/tokenizer-tiny", val_files=["data/tiny/val.jsonl"], seq_len=64, batch_size=2)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A random baseline and a learned V-scale export of it, as Hugging Face directories."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("pair")
    save_tiny_pretrained(root / "baseline", max_positions=128)
    model = vscale.apply_vscale(AutoModelForCausalLM.from_pretrained(root / "baseline"), "learned")
    with torch.no_grad():
        for scaler in vscale_modules(model):
            scaler.theta.fill_(-1.0)
    vscale.save_pretrained(model, root / "vscale", AutoTokenizer.from_pretrained("assets/tokenizer-tiny"))
    return [str(root / "baseline"), str(root / "vscale")]


def test_truncate_writes_json_and_figures_for_a_baseline_and_vscale_pair(pair, tmp_path):
    eval_cli.truncate(
        TruncateOptions(pair, label=["baseline", "vscale"], out=str(tmp_path), windows=[1, 4, 16], batches=1, **TEXT)
    )
    result = json.loads((tmp_path / "truncate.json").read_text())
    assert (
        result["windows"] == [1, 4, 16] and result["rows"] == 2 and result["queries"] == "t >= k of rows of 64 tokens"
    )
    for label, mode in (("baseline", "off"), ("vscale", "learned")):
        c = result["checkpoints"][label]
        assert (
            c["vscale"] == mode
            and list(c["one_minus_cos"]) == ["1", "4", "16"]
            and all(len(v) == 2 for v in c["one_minus_cos"].values())
        )
        assert (
            list(c["one_minus_cos_keep_sink"]) == ["1", "4", "16"]
            and c["one_minus_cos_keep_sink"] != c["one_minus_cos"]
        )
        assert len(c["attended_distance"]) == 2 and all(
            len(row) == 4 and all(0 < d < 64 for d in row) for row in c["attended_distance"]
        )
    assert result["checkpoints"]["baseline"]["one_minus_cos"] != result["checkpoints"]["vscale"]["one_minus_cos"]
    for figure in ("truncation.png", "attended_distance.png"):
        assert (tmp_path / figure).stat().st_size > 10_000


def test_interpolate_writes_json_and_a_figure_for_two_tokens_in_one_prompt(pair, tmp_path):
    eval_cli.interpolate(
        InterpolateOptions(
            pair,
            label=["baseline", "vscale"],
            out=str(tmp_path),
            prompts=["Return the number of items in the list"],
            tokens=[" list", " set"],
            layer=1,
            position=-1,
            steps=5,
            tokenizer="assets/tokenizer-tiny",
        )
    )
    result = json.loads((tmp_path / "interpolate.json").read_text())
    assert (result["layer"], result["steps"], result["tokens"]) == (1, 5, [" list", " set"])
    for c in result["checkpoints"].values():
        assert len(c["heads"]) == 4 and all(len(h["norm"]) == len(h["attention_to_token0"]) == 5 for h in c["heads"])
        assert c["mlp"]["progress"][0] == 0 and c["mlp"]["progress"][-1] == pytest.approx(1)
    assert (tmp_path / "interpolation.png").stat().st_size > 10_000


def test_truncate_refuses_a_window_of_zero_before_loading(tmp_path):
    with pytest.raises(ValueError, match=r"--windows \[0, 4\]: give one or more windows of at least 1"):
        eval_cli.truncate(TruncateOptions([str(tmp_path / "never-loaded.ckpt")], windows=[0, 4]))


def test_truncate_refuses_windows_that_do_not_cut_the_rows(pair, tmp_path):
    with pytest.raises(ValueError, match=r"--windows: the window 64 does not cut rows of 64 tokens"):
        eval_cli.truncate(TruncateOptions(pair[:1], out=str(tmp_path), windows=[1, 64], **TEXT))


def test_interpolate_runs_between_two_key_aligned_ends_of_one_prompt(pair, tmp_path):
    eval_cli.interpolate(
        InterpolateOptions(
            pair[:1],
            label=["baseline"],
            out=str(tmp_path),
            prompts=["Return the number of items in the list"],
            align_keys=[0, 3],
            targets=[0, 3],
            layer=1,
            position=-1,
            steps=3,
            tokenizer="assets/tokenizer-tiny",
        )
    )
    result = json.loads((tmp_path / "interpolate.json").read_text())
    (c,) = result["checkpoints"].values()
    assert result["align_keys"] == [0, 3] and c["targets"] == [0, 3] and len(c["logits"]["top_token"]) == 3


def test_interpolate_refuses_one_prompt_without_tokens_before_loading(tmp_path):
    with pytest.raises(ValueError, match=r"--prompts \['only one'\]: give two prompts"):
        eval_cli.interpolate(InterpolateOptions([str(tmp_path / "never-loaded.ckpt")], prompts=["only one"]))


def test_interpolate_refuses_tokens_that_are_not_one_token(pair, tmp_path):
    with pytest.raises(ValueError, match=r"--tokens \[' list', ' dictionaries'\]: each must be one token"):
        eval_cli.interpolate(
            InterpolateOptions(
                pair[:1],
                out=str(tmp_path),
                prompts=["Return the list"],
                tokens=[" list", " dictionaries"],
                tokenizer="assets/tokenizer-tiny",
            )
        )


def test_interpolate_refuses_a_layer_the_model_does_not_have(pair, tmp_path):
    with pytest.raises(ValueError, match=r"--layer 2: the model has 2 decoder layers; give 0..1"):
        eval_cli.interpolate(
            InterpolateOptions(
                pair[:1],
                out=str(tmp_path),
                prompts=["Return the list", "Return the set"],
                layer=2,
                tokenizer="assets/tokenizer-tiny",
            )
        )


def test_command_line_lists_keep_off_on_yes_no_as_strings(pair, tmp_path):
    result = eval_cli.main(
        [
            "interpolate",
            "--ckpt",
            f"[{pair[0]}, {pair[1]}]",
            "--label",
            "[off, on]",
            "--prompts",
            "[off, yes]",
            "--steps",
            "2",
            "--tokenizer",
            "assets/tokenizer-tiny",
            "--out",
            str(tmp_path),
        ]
    )
    assert list(result["checkpoints"]) == ["off", "on"] and result["prompts"] == ["off", "yes"]


def test_truncation_refuses_a_kernel_that_takes_no_attention_mask():
    from conftest import tiny_model

    from vscale.eval.probes.truncate import check_kernel

    with pytest.raises(
        ValueError,
        match=r"checkpoint 'x' attends with the 'flex_attention' kernel, "
        r"which takes no 4D attention mask; load it with attn_implementation 'sdpa' or 'eager'",
    ):
        check_kernel(tiny_model(attn="flex_attention"), "checkpoint 'x'")
