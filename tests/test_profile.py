"""`eval.py profile`: the profile of method §3 of a pretrained model, no training, on tiny random
Llama / Qwen3 models saved locally beside the shipped tokenizer."""

import json
import math

import pytest
import torch
from conftest import save_tiny_pretrained

import vscale
from vscale.eval import cli as eval_cli
from vscale.eval.profile import ProfileOptions
from vscale.model import vscale_modules

VAL = "data/tiny/val.jsonl"
SMALL = dict(files=[VAL], seq_len=64, batch_size=2, batches=2)
FIGURES = ("grad_norm_violin.png", "gsink_ratio.png", "sink_rate.png", "token0_ratio.png")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for arch in ("llama", "qwen3"):
        save_tiny_pretrained(root / arch, arch, max_positions=128)
    return {arch: str(root / arch) for arch in ("llama", "qwen3")}


def packed_batches(tokenizer_dir: str, seq_len: int, batch_size: int, batches: int) -> list[torch.Tensor]:
    """method §1 packing written out independently: each document's tokens then <eos>, cut into rows."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    stream = []
    with open(VAL) as f:
        for line in f:
            stream += tokenizer(json.loads(line)["text"], add_special_tokens=False)["input_ids"] + [
                tokenizer.eos_token_id
            ]
            if len(stream) >= seq_len * batch_size * batches:
                break
    rows = torch.tensor(stream[: seq_len * batch_size * batches]).view(batches, batch_size, seq_len)
    return list(rows)


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_profile_writes_per_layer_metrics_of_every_layer_and_the_four_figures(models, arch, tmp_path):
    eval_cli.profile(ProfileOptions(model=models[arch], out=str(tmp_path), **SMALL))
    result = json.loads((tmp_path / "profile.json").read_text())
    assert result["model"] == models[arch] and result["model_type"] == arch and result["vscale"] is None
    assert (result["dtype"], result["seq_len"], result["batches"], result["rows"], result["seed"]) == (
        "float32",
        64,
        2,
        4,
        0,
    )
    for name in ("gsink/ratio", "sink/rate", "act/h_out_ratio", "gsink/v_t0", "reshape/attn_bloat_t0"):
        assert all(math.isfinite(result["metrics"][f"{name}/layer_{l}"]) for l in (0, 1)), name
    assert "gsink/ratio/median" in result["metrics"] and "sink/rate/max" in result["metrics"]
    for figure in FIGURES:
        assert (tmp_path / figure).stat().st_size > 5_000, figure


def test_profile_values_pool_the_rows_of_the_same_packed_batches(models, tmp_path):
    """Two batches of 2 rows pooled equal one batch of the 4 rows, whose mean loss halves each row's gradient."""
    from transformers import AutoModelForCausalLM

    metrics = eval_cli.profile(ProfileOptions(model=models["llama"], out=str(tmp_path), **SMALL))["metrics"]
    model = AutoModelForCausalLM.from_pretrained(models["llama"], attn_implementation="sdpa").eval()
    all_rows = vscale.diagnose(model, torch.cat(packed_batches(models["llama"], 64, 2, 2)))
    for name, scale in (
        ("gsink/ratio/layer_0", 1),
        ("gsink/ratio/layer_1", 1),
        ("sink/alpha/layer_1", 1),
        ("act/h_out_ratio/layer_1", 1),
        ("gsink/ratio/median", 1),
        ("gsink/ratio_summed/layer_1", 1),
        ("gsink/k_t0/layer_0", 2),
    ):
        assert metrics[name] == pytest.approx(scale * all_rows[name], rel=1e-5), name


def test_a_model_that_is_not_a_pre_norm_rmsnorm_decoder_is_refused_naming_it(tmp_path):
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(vocab_size=4096, n_positions=128, n_embd=32, n_layer=1, n_head=2)).save_pretrained(
        tmp_path / "gpt2"
    )
    AutoTokenizer.from_pretrained("assets/tokenizer-tiny").save_pretrained(tmp_path / "gpt2")
    with pytest.raises(
        ValueError,
        match=rf"--model '{tmp_path / 'gpt2'}' must be a pre-norm RMSNorm decoder \(llama.*model_type='gpt2'",
    ):
        eval_cli.profile(ProfileOptions(model=str(tmp_path / "gpt2"), out=str(tmp_path / "out"), **SMALL))


def test_rows_shorter_than_the_diagnostics_window_are_refused_naming_seq_len(models, tmp_path):
    with pytest.raises(ValueError, match="--seq_len.*at least 32"):
        eval_cli.profile(ProfileOptions(model=models["llama"], out=str(tmp_path), **(SMALL | {"seq_len": 16})))


def test_rows_beyond_the_models_positions_are_refused_naming_seq_len(models, tmp_path):
    with pytest.raises(ValueError, match=r"--seq_len=256 exceeds .*max_position_embeddings=128"):
        eval_cli.profile(ProfileOptions(model=models["llama"], out=str(tmp_path), **(SMALL | {"seq_len": 256})))


def test_missing_data_files_are_refused_naming_files(models, tmp_path):
    with pytest.raises(FileNotFoundError, match="--files.*no-such.jsonl"):
        eval_cli.profile(
            ProfileOptions(
                model=models["llama"], out=str(tmp_path), **(SMALL | {"files": [str(tmp_path / "no-such.jsonl")]})
            )
        )


def test_a_profile_without_a_text_source_is_refused(models, tmp_path):
    with pytest.raises(ValueError, match="--files / --dataset"):
        eval_cli.profile(ProfileOptions(model=models["llama"], out=str(tmp_path), seq_len=64))


def test_an_exported_vscale_model_is_profiled_with_its_vscale(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    plain = save_tiny_pretrained(tmp_path / "plain", "qwen3", max_positions=128)
    model = vscale.apply_vscale(AutoModelForCausalLM.from_pretrained(plain), "learned")
    thetas = [0.5, -0.25]
    with torch.no_grad():
        for scaler, theta in zip(vscale_modules(model), thetas):
            scaler.theta.fill_(theta)
    vscale.save_pretrained(model, tmp_path / "export", AutoTokenizer.from_pretrained("assets/tokenizer-tiny"))
    result = eval_cli.profile(ProfileOptions(model=str(tmp_path / "export"), out=str(tmp_path / "out"), **SMALL))
    assert result["vscale"] == "learned"
    for layer, theta in enumerate(thetas):
        assert result["metrics"][f"vscale/lambda_median/layer_{layer}"] == pytest.approx(math.exp(theta), rel=1e-6)
