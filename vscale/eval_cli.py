"""Evaluate and compare checkpoints (method §3 and §5).

    python eval.py run --ckpt "[A.ckpt, B.ckpt]" --label "[baseline, vscale]" --out eval/tiny
    python eval.py compare --run "[runs/tiny/off-seed0, runs/tiny/learned-seed0]" --out eval/tiny-curves
    python eval.py export --ckpt runs/tiny/learned-seed0/checkpoints/last.ckpt --out export/tiny-learned
    python eval.py profile --model Qwen/Qwen3-0.6B --dataset allenai/c4 --dataset_config en --out eval/profile-qwen3
    python eval.py truncate --ckpt "[A.ckpt, B.ckpt]" --label "[baseline, vscale]" --out eval/truncate
    python eval.py interpolate --ckpt "[A.ckpt, B.ckpt]" --prompts "[The cat sat on the, The dog sat on the]" --layer 2 --out eval/interpolate
"""

import json
import random
from itertools import islice
from pathlib import Path
from typing import Literal

import torch
from jsonargparse import CLI
from tqdm import tqdm

from vscale import compare as C
from vscale import eval_plots
from vscale import evaluate as E
from vscale import plots
from vscale.console import one_line_errors, quiet
from vscale.data import split_batch
from vscale.hub import from_hub
from vscale.needle import KINDS as NEEDLE_KINDS
from vscale.probes.truncate import WINDOWS as TRUNCATION_WINDOWS
from vscale.quant import QUANT_MODES, check_quant_mode
from vscale.report import log_to_wandb, render

CURVES = ["train/loss", "val/loss", "sink/rate/mean", "gsink/ratio/median", "act/v_ratio/mean", "act/h_out_ratio/max"]


def run(
    ckpt: list[str] | None = None,
    label: list[str] | None = None,
    out: str = "eval",
    tokenizer: str | None = None,
    val_files: list[str] | None = None,
    dataset: str | None = None,
    dataset_config: str | None = None,
    seq_len: int | None = None,
    batch_size: int | None = None,
    batches: int = 8,
    calib_batches: int = 4,
    quant: list[str] = list(QUANT_MODES),
    needle_context_lens: list[int] | None = None,
    needle_seeds: list[int] = [0, 1, 2, 3, 4],
    needle_n: int = 10,
    seed: int = 0,
    lm_eval_tasks: list[str] = [],
    lm_eval_include_path: str | None = None,
    lm_eval_limit: int | None = None,
    lm_eval_max_seq_lengths: list[int] | None = None,
    wandb: bool = False,
    wandb_project: str = "vscale",
    wandb_group: str | None = None,
):
    """Measure checkpoints side by side; writes results.json, report.md and PNGs into `out`.

    Args:
        ckpt: Checkpoints: a train.py .ckpt, or a Hugging Face model directory or hub name.
        label: One label per checkpoint (default: the checkpoint paths). Checkpoints of one arm (labels, or run
            directory names, equal but for a -seed<N> suffix) are also pooled: each measurement as mean ± std over them
            (results.json `arms`, the report's Arms table).
        out: Output directory.
        tokenizer: Eval tokenizer (default: the first .ckpt's training data config, as are the data fields below).
        val_files: Local eval text files.
        dataset: Hub eval dataset (streamed).
        dataset_config: Hub dataset configuration.
        seq_len: Tokens per eval row.
        batch_size: Rows per eval batch.
        batches: Eval batches for perplexity and the method §3 profile (pooled over their rows).
        calib_batches: Training batches that calibrate the static W8A8 ranges.
        quant: W8A8 modes (docs/method.md §5): per_token, per_tensor, per_tensor_down_proj; [] skips them. Perplexity, needle retrieval and lm-eval tasks are measured under each.
        needle_context_lens: Needle-retrieval context lengths (default: the paper's 1024 and 2048, seq_len and twice it, up to twice seq_len and as far as the models' max_position_embeddings); [] skips it.
        needle_seeds: Seeds of the needle cases; accuracy is mean and std over them.
        needle_n: Needle cases per seed, context length and kind (single, single_uuid, multi).
        seed: Seed of everything random in the evaluation.
        lm_eval_tasks: lm-evaluation-harness tasks run on each model with its V-scale, in full precision and under each W8A8 mode (needs `pip install "lm-eval[hf,ruler]"`), e.g. RULER's needle tasks [niah_single_1, niah_multikey_2, niah_multikey_3].
        lm_eval_include_path: Directory of local lm-eval task YAMLs.
        lm_eval_limit: Examples per lm-eval task (None: all).
        lm_eval_max_seq_lengths: Lengths of RULER's synthetic tasks, given to lm-eval as task metadata with the eval tokenizer (default: the needle context lengths of at least 256; RULER keeps 128 of each for the answer).
        wandb: Also log the tables and figures to wandb (offline without credentials).
        wandb_project: wandb project.
        wandb_group: wandb group, e.g. the experiment the checkpoints come from.
    """
    labels = _labels(ckpt, label)
    for mode in quant:
        check_quant_mode(mode)
    if lm_eval_tasks:
        E.lm_eval_manager(lm_eval_tasks, lm_eval_include_path)  # unknown names fail before loading; the tasks load later, with their metadata
    torch.manual_seed(seed)
    random.seed(seed)
    loaded = _load(ckpt, labels)
    data = _eval_data(loaded, tokenizer=tokenizer, val_files=val_files, dataset=dataset, dataset_config=dataset_config,
                      seq_len=seq_len, batch_size=batch_size)
    seq = data.hparams.seq_len
    max_pos = min(x.model.config.max_position_embeddings for x in loaded.values())
    lens = E.needle_lengths(seq, max_pos) if needle_context_lens is None else needle_context_lens
    ruler_lens = [n for n in lens if n >= 2 * E.RULER_ANSWER_TOKENS] if lm_eval_max_seq_lengths is None else lm_eval_max_seq_lengths
    for x in loaded.values():
        E.check_fits(x, data.tokenizer, seq, lens, ruler_lens if lm_eval_tasks else [])
    manager = E.lm_eval_manager(lm_eval_tasks, lm_eval_include_path, {"tokenizer": data.hparams.tokenizer, "max_seq_lengths": ruler_lens}) if lm_eval_tasks else None

    eval_rows = E.eval_batches(data, batches)
    data.setup("fit")
    calibration = [split_batch(b)[0] for _, b in zip(range(calib_batches), data.train_dataloader())]
    texts = data.validation_texts() if lens else []
    results = {"eval": {"ckpt": ckpt, "labels": labels, "data": dict(data.hparams), "batches": batches, "calib_batches": calib_batches,
                        "quant": quant, "needle_context_lens": lens, "needle_seeds": needle_seeds, "needle_n": needle_n, "seed": seed,
                        "lm_eval_tasks": lm_eval_tasks, "lm_eval_max_seq_lengths": ruler_lens if lm_eval_tasks else None},
               "checkpoints": {}}
    norms = {}
    for name, x in tqdm(loaded.items(), desc="checkpoints"):
        measured = E.evaluate_checkpoint(x, eval_rows, calibration, data.tokenizer, texts, quant, lens, needle_seeds, needle_n, trained_len=(x.data or {}).get("seq_len"),
                                        lm_eval_tasks=lm_eval_tasks, lm_eval_manager=manager, lm_eval_limit=lm_eval_limit)
        if measured["gradient_norms"] is not None:
            norms[name] = measured["gradient_norms"]
        results["checkpoints"][name] = {"path": x.path, "vscale": x.vscale, "config": x.hparams, "data": x.data, "seed": x.seed,
                                        "results": measured["results"], "errors": measured["errors"]}

    arms = C.checkpoint_arms(ckpt, labels, label is not None)
    if any(len(members) > 1 for members in arms.values()):
        results["arms"] = C.pool({k: c["results"] for k, c in results["checkpoints"].items()}, arms)

    out_dir = Path(out)
    profiles = {k: c["results"]["profile"] for k, c in results["checkpoints"].items() if "profile" in c["results"]}
    figures = plots.eval_figures(profiles, norms, out_dir)
    heads = {k: c["results"]["heads"]["sink/alpha"] for k, c in results["checkpoints"].items() if "heads" in c["results"]}
    if heads:
        figures.append(alpha_heatmap(heads, out_dir))
    if lens:
        needles = {k: c["results"].get("needle", {}) for k, c in results["checkpoints"].items()}
        figures.append(eval_plots.needle_accuracy(needles, [E.FULL, *quant], list(NEEDLE_KINDS), lens, out_dir / "needle_accuracy.png"))
    results["figures"] = [f.name for f in figures]
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out_dir / "report.md").write_text(render(results))
    if wandb:
        log_to_wandb(results, out_dir, wandb_project, wandb_group)
    print(f"wrote {out_dir / 'report.md'}, {out_dir / 'results.json'} and {len(figures)} figures")
    return results


def alpha_heatmap(heads: dict[str, list[list[float]]], out_dir: Path) -> Path:
    """alpha_heads.png: alpha_h (method §3) by layer and query head, sink heads (alpha_h > eps) outlined."""
    from vscale.metrics import EPS, T_EPS

    return eval_plots.head_heatmap(heads, out_dir / "alpha_heads.png", f"alpha_h (mean a_t0, t < {T_EPS})",
                                   f"Attention sink per head: alpha_h, the mean attention of queries 0..{T_EPS - 1} to token 0", 0.0, 1.0, EPS)


def export(ckpt: str | None = None, out: str = "export"):
    """Export a train.py checkpoint as a Hugging Face directory (weights, config, tokenizer) plus
    vscale.json; reload with V-scale in one line: `vscale.from_pretrained(out)`.

    Args:
        ckpt: A train.py .ckpt.
        out: Output directory.
    """
    from vscale.data import load_tokenizer
    from vscale.hf import save_pretrained

    if not ckpt:
        raise ValueError("--ckpt: give the train.py checkpoint to export.")
    loaded = E.load_checkpoint(ckpt)
    tokenizer = load_tokenizer(loaded.data["tokenizer"]) if loaded.data else None
    save_pretrained(loaded.model, out, tokenizer)
    print(f"wrote {out} (vscale={loaded.vscale}); load it with vscale.from_pretrained({out!r})")


def _load_rows(files, dataset, dataset_config, split, text_field, tokenizer, seq_len, n) -> list[torch.Tensor]:
    """The first n rows of the source, packed as in training (docs/method.md §1) by `vscale.data.StreamingRows`;
    files and hub datasets are both streamed, so only what the rows need is read."""
    import datasets

    from vscale.data import StreamingRows, local_format

    if files:
        ds = datasets.load_dataset(local_format(files, "--files"), data_files=files, split="train", streaming=True)
    else:
        ds = from_hub(datasets.load_dataset, dataset, "--dataset", dataset_config, split=split, streaming=True)
    try:
        return list(islice(StreamingRows(ds, tokenizer, seq_len, text_field), n))
    except KeyError as e:
        raise ValueError(f"--text_field {text_field!r}: the data has no such column ({e}); name the column that holds the text.") from e


def profile(
    model: str | None = None,
    out: str = "profile",
    files: list[str] | None = None,
    dataset: str | None = None,
    dataset_config: str | None = None,
    split: str = "validation",
    text_field: str = "text",
    seq_len: int = 512,
    batch_size: int = 4,
    batches: int = 8,
    dtype: Literal["bfloat16", "float32", "auto"] | None = None,
    device_map: str | None = None,
    seed: int = 0,
):
    """The profile (method §3) of a pretrained model, no training: every `vscale.diagnose` metric
    pooled over the rows of `batches` batches of packed text (and alpha_h, M_0, S_0 per head), written
    to profile.json with sink_rate.png, token0_ratio.png, gsink_ratio.png, grad_norm_violin.png and
    alpha_heads.png in `out`.

    Args:
        model: Hugging Face model directory or hub name (Llama, Mistral, Qwen2, Qwen3); a directory with vscale.json (eval.py export) is profiled with its V-scale. Its own tokenizer is used.
        out: Output directory.
        files: Local .txt/.jsonl/.json/.parquet text files.
        dataset: Hub dataset (streamed), instead of files.
        dataset_config: Hub dataset configuration (e.g. en).
        split: Split of the hub dataset.
        text_field: Column holding the text.
        seq_len: Tokens per row (at least 32, at most the model's max_position_embeddings).
        batch_size: Rows per batch.
        batches: Batches whose rows the metrics are pooled over.
        dtype: Weights' dtype: bfloat16, float32 or auto (the checkpoint's); default bfloat16 on a GPU, float32 on CPU.
        device_map: transformers device_map (cuda:0, cpu, auto, ...); default: the whole model on the current GPU, or on the CPU without one. The diagnostics need all weights on one device: a model that accelerate splits or offloads is refused.
        seed: Seed of everything random.
    """
    from transformers import AutoConfig

    from vscale.data import load_tokenizer, local_format
    from vscale.diagnostics import check_seq_len, diagnose_batches
    from vscale.hf import check_model, from_pretrained, vscale_modules

    if not model:
        raise ValueError("--model: give a Hugging Face model directory or hub name, e.g. --model Qwen/Qwen3-0.6B.")
    if bool(files) == bool(dataset):
        raise ValueError('--files / --dataset: give exactly one text source, e.g. --files "[data/tiny/val.jsonl]" or --dataset allenai/c4 --dataset_config en.')
    if files:
        local_format(files, "--files")
    check_seq_len(seq_len, "--seq_len")
    if batch_size < 1 or batches < 1:
        raise ValueError(f"--batch_size {batch_size} / --batches {batches}: both must be at least 1.")
    if dtype not in (None, "bfloat16", "float32", "auto"):
        raise ValueError(f"--dtype {dtype!r}: choose bfloat16, float32 or auto.")
    config = from_hub(AutoConfig.from_pretrained, model, "--model")
    check_model(config, f"--model {model!r}", lengths={"--seq_len": seq_len})
    torch.manual_seed(seed)
    random.seed(seed)

    tokenizer = load_tokenizer(model, "--model")
    check_model(config, f"--model {model!r}", tokenizer, "its tokenizer")
    rows = _load_rows(files, dataset, dataset_config, split, text_field, tokenizer, seq_len, batches * batch_size)
    n = len(rows) // batch_size
    if n == 0:
        raise ValueError(f"--seq_len {seq_len} / --batch_size {batch_size}: the data gave {len(rows)} rows of {seq_len} tokens, fewer than one batch; give more text or lower them.")
    if n < batches:
        print(f"warning: the data gave {n} full batches of the {batches} asked (--batches); profiling those.")
    ids = [torch.stack(rows[i * batch_size : (i + 1) * batch_size]) for i in range(n)]

    cuda = torch.cuda.is_available()
    dtype = dtype or ("bfloat16" if cuda else "float32")
    device_map = device_map or ("cuda" if cuda else None)
    lm = from_hub(from_pretrained, model, "--model", dtype=dtype if dtype == "auto" else getattr(torch, dtype), device_map=device_map, attn_implementation="sdpa")
    devices = {str(p.device) for p in lm.parameters()}
    if len(devices) > 1 or "meta" in devices:
        placed = sorted(set(map(str, getattr(lm, "hf_device_map", {}).values())) or devices)
        raise ValueError(f"--device_map {device_map!r}: model {model!r} was split over {placed} (offloaded or sharded); the diagnostics need "
                         f"every weight resident on one device: give --device_map cuda:0 (or cpu) and a device the model fits on, or --dtype bfloat16.")
    lm.eval().requires_grad_(False)  # activation gradients only; no weight gradients are needed or kept
    ids = [b.to(lm.get_input_embeddings().weight.device) for b in ids]
    metrics, norms, heads = diagnose_batches(lm, tqdm(ids, desc="batches"))

    out_dir = Path(out)
    label = Path(model).resolve().name if Path(model).is_dir() else model
    figures = [*plots.eval_figures({label: metrics}, {label: norms}, out_dir), alpha_heatmap({label: heads["sink/alpha"]}, out_dir)]
    scalers = vscale_modules(lm)
    result = {"model": model, "model_type": config.model_type, "vscale": scalers[0].mode if scalers else None,
              "dtype": str(next(lm.parameters()).dtype).removeprefix("torch."), "device_map": device_map,
              "data": {"files": files, "dataset": dataset, "dataset_config": dataset_config, "split": None if files else split, "text_field": text_field},
              "seq_len": seq_len, "batch_size": batch_size, "batches": n, "rows": n * batch_size, "seed": seed,
              "figures": [f.name for f in figures], "metrics": metrics, "heads": heads}
    (out_dir / "profile.json").write_text(json.dumps(result, indent=1))
    print(f"{model}: R_GS median over layers {metrics['gsink/ratio/median']:.3g}, max sink rate {metrics['sink/rate/max']:.3g}, "
          f"max token-0 h_out ratio {metrics['act/h_out_ratio/max']:.3g} ({n} batches x {batch_size} rows x {seq_len} tokens)")
    print(f"wrote {out_dir / 'profile.json'} and {len(figures)} figures")
    return result


def _load(ckpt: list[str], labels: list[str]) -> dict[str, E.Loaded]:
    """Each checkpoint, by its label."""
    return {l: E.load_checkpoint(c) for l, c in tqdm(list(zip(labels, ckpt)), desc="loading")}


def _eval_data(loaded: dict[str, E.Loaded], **fields):
    """The eval data: the fields given, the others from the first train.py checkpoint's training data config."""
    return E.eval_data(fields, next((x.data for x in loaded.values() if x.data), None))


def _labels(ckpt: list[str] | None, label: list[str] | None) -> list[str]:
    """One distinct label per checkpoint (default: the paths), checked before anything loads."""
    if not ckpt:
        raise ValueError('--ckpt: give one or more checkpoints, e.g. --ckpt "[a.ckpt, b.ckpt]".')
    labels = label or ckpt
    if len(labels) != len(ckpt) or len(set(labels)) != len(labels):
        raise ValueError(f"--label: give one distinct label per --ckpt ({len(ckpt)} checkpoints, labels {labels}).")
    return labels


def truncate(
    ckpt: list[str] | None = None,
    label: list[str] | None = None,
    out: str = "truncate",
    windows: list[int] = list(TRUNCATION_WINDOWS),
    tokenizer: str | None = None,
    val_files: list[str] | None = None,
    dataset: str | None = None,
    dataset_config: str | None = None,
    seq_len: int | None = None,
    batch_size: int | None = None,
    batches: int = 2,
    seed: int = 0,
):
    """How much of each layer's residual stream comes from beyond the last k tokens: 1 - cos between
    each layer's output with the full context and with attention limited to the last k tokens (a
    banded causal mask, which drops token 0 for queries t >= k), one line per k over layers, and the
    mean attended distance of each head. Writes truncate.json, truncation.png and
    attended_distance.png into `out` (vscale.probes.truncate).

    Args:
        ckpt: Checkpoints: a train.py .ckpt, or a Hugging Face model directory or hub name.
        label: One label per checkpoint (default: the checkpoint paths).
        out: Output directory.
        windows: Window sizes k, in tokens; each below --seq_len (queries t >= the largest are compared).
        tokenizer: Eval tokenizer (default: the first .ckpt's training data config, as are the data fields below).
        val_files: Local eval text files.
        dataset: Hub eval dataset (streamed).
        dataset_config: Hub dataset configuration.
        seq_len: Tokens per eval row.
        batch_size: Rows per eval batch.
        batches: Eval batches whose rows are averaged.
        seed: Seed of everything random.
    """
    from vscale.probes.truncate import attended_distance, check_kernel, check_windows, truncation

    labels = _labels(ckpt, label)
    check_windows(windows)
    if batches < 1:
        raise ValueError(f"--batches {batches}: give at least 1.")
    torch.manual_seed(seed)
    random.seed(seed)
    loaded = _load(ckpt, labels)
    data = _eval_data(loaded, tokenizer=tokenizer, val_files=val_files, dataset=dataset, dataset_config=dataset_config,
                      seq_len=seq_len, batch_size=batch_size)
    seq = data.hparams.seq_len
    check_windows(windows, seq)
    for x in loaded.values():
        E.check_fits(x, data.tokenizer, seq, [])
        check_kernel(x.model, f"checkpoint {x.path!r}")
    rows = E.eval_batches(data, batches)

    result = {"windows": windows, "queries": f"t >= {max(windows)} of rows of {seq} tokens", "rows": sum(b.shape[0] for b in rows),
              "data": dict(data.hparams), "seed": seed, "checkpoints": {}}
    for name, x in tqdm(loaded.items(), desc="checkpoints"):
        curves = truncation(x.model, rows, windows)
        result["checkpoints"][name] = {"path": x.path, "vscale": x.vscale, "one_minus_cos": curves,
                                       "attended_distance": attended_distance(x.model, rows).tolist()}
    out_dir = Path(out)
    figures = [eval_plots.truncation({k: c["one_minus_cos"] for k, c in result["checkpoints"].items()}, out_dir / "truncation.png"),
               eval_plots.head_heatmap({k: c["attended_distance"] for k, c in result["checkpoints"].items()}, out_dir / "attended_distance.png",
                                       "mean attended distance (tokens)", "Mean attended distance sum_j a_tj (t - j) per head, full context", vmin=0.0)]
    result["figures"] = [f.name for f in figures]
    (out_dir / "truncate.json").write_text(json.dumps(result, indent=1))
    for name, c in result["checkpoints"].items():
        print(f"{name}: 1 - cos at the last layer, " + ", ".join(f"k={k}: {v[-1]:.3g}" for k, v in c["one_minus_cos"].items()))
    print(f"wrote {out_dir / 'truncate.json'} and {len(figures)} figures")
    return result


def interpolate(
    ckpt: list[str] | None = None,
    label: list[str] | None = None,
    out: str = "interpolate",
    prompts: list[str] | None = None,
    tokens: list[str] | None = None,
    layer: int = 0,
    position: int = -1,
    steps: int = 21,
    tokenizer: str | None = None,
):
    """Interpolate one position's residual stream between two vectors at the input of a layer and
    record, along the path, each head's attention output, its attention to token 0, the MLP output
    and the layer output: where do plateaus and cliffs come from, attention or MLP? Writes
    interpolate.json and interpolation.png into `out` (vscale.probes.interpolate); give the baseline
    and V-scale checkpoints together to compare them.

    Args:
        ckpt: Checkpoints: a train.py .ckpt, or a Hugging Face model directory or hub name.
        label: One label per checkpoint (default: the checkpoint paths).
        out: Output directory.
        prompts: Two prompts A and B (the vectors are their residuals at --position; the path runs in A's context), or, with --tokens, one prompt. Quote prompts holding commas: '["a, b", "c"]'.
        tokens: Two single tokens put in turn at --position of the one prompt (two tokens, same context), e.g. '[" cat", " dog"]'.
        layer: Decoder layer (0-based) whose input is interpolated and whose heads and MLP are recorded.
        position: Token position (negative counts from the end of each prompt).
        steps: Points on the path, alpha = 0..1 (at least 2).
        tokenizer: Tokenizer (default: the first .ckpt's training tokenizer, or the model directory's own).
    """
    from vscale.data import load_tokenizer
    from vscale.hf import check_model
    from vscale.probes.interpolate import check_path
    from vscale.probes.interpolate import interpolate as interpolate_path

    labels = _labels(ckpt, label)
    if tokens is not None and (len(tokens) != 2 or not prompts or len(prompts) != 1):
        raise ValueError(f'--tokens {tokens} / --prompts {prompts}: with --tokens give exactly two tokens and one prompt, e.g. --prompts "[The cat sat]" --tokens \'[" cat", " dog"]\' --position 1.')
    if tokens is None and (not prompts or len(prompts) != 2):
        raise ValueError(f'--prompts {prompts}: give two prompts, e.g. --prompts "[The cat sat on the, The dog sat on the]" (or one prompt and two --tokens).')
    loaded = _load(ckpt, labels)
    first = next(iter(loaded.values()))
    source = tokenizer or (first.data or {}).get("tokenizer") or first.path
    tok = load_tokenizer(source, "--tokenizer")
    encode = lambda text: tok.encode(text, add_special_tokens=False)  # no <bos>, as in training (method §1)
    if tokens is None:
        ids = [encode(p) for p in prompts]
    else:
        context, pieces = encode(prompts[0]), [encode(t) for t in tokens]
        if any(len(p) != 1 for p in pieces):
            raise ValueError(f"--tokens {tokens}: each must be one token of {source!r}; they encode to {pieces}. Include the leading space the tokenizer expects.")
        if not -len(context) <= position < len(context):
            raise ValueError(f"--position {position}: the prompt has {len(context)} tokens; give a position in {-len(context)}..{len(context) - 1}.")
        ids = [context[:position % len(context)] + p + context[position % len(context) + 1 :] for p in pieces]
    for x in loaded.values():
        check_model(x.model.config, f"checkpoint {x.path!r}", tok, "--tokenizer", {"--prompts": max(map(len, ids))})
        check_path(x.model.config.num_hidden_layers, layer, steps, {"prompt A": (position, len(ids[0])), "prompt B": (position, len(ids[1]))})

    result = {"prompts": prompts, "tokens": tokens, "tokenizer": source, "layer": layer, "position": position, "steps": steps, "checkpoints": {}}
    for name, x in tqdm(loaded.items(), desc="checkpoints"):
        result["checkpoints"][name] = {"path": x.path, "vscale": x.vscale, **interpolate_path(x.model, ids[0], ids[1], layer, position, steps)}
    out_dir = Path(out)
    figure = eval_plots.interpolation(result["checkpoints"], out_dir / "interpolation.png")
    result["figures"] = [figure.name]
    (out_dir / "interpolate.json").write_text(json.dumps(result, indent=1))
    for name, c in result["checkpoints"].items():
        heads = [h["steepest"] for h in c["heads"] if h["steepest"] is not None]
        print(f"{name}: steepest step (1 = linear) attention heads {max(heads, default=float('nan')):.3g}, MLP {c['mlp']['steepest'] or float('nan'):.3g}")
    print(f"wrote {out_dir / 'interpolate.json'} and {figure}")
    return result


def compare(run: list[str] | str | None = None, label: list[str] | None = None, out: str = "compare", metrics: list[str] | None = None):
    """Training runs side by side, grouped into arms (the seeds of one configuration): summary.md (each metric's
    final value, mean ± std over an arm's runs), curves.png (each metric by step: each arm's mean, a band of ±std)
    and profile.png (the per-layer profile at the end of training, mean ± std).

    Args:
        run: Run directories written by train.py (holding metrics.csv), as a list or one directory; an experiment
            directory (runs/<experiment>) stands for all its runs.
        label: Arm names, one per run (runs sharing a label are pooled) or one per arm. Default: each run directory's
            name minus its -seed<N> suffix (off, learned, gated-off, ...).
        out: Output directory.
        metrics: Metric names (metrics.csv columns, e.g. sink/alpha/max, gsink/ratio/layer_1) for the table and curves;
            default: those of CURVES the runs logged.
    """
    if not run:
        raise ValueError('--run: give run directories or an experiment directory, e.g. --run "[runs/tiny/off-seed0, runs/tiny/learned-seed0]" or --run "[runs/bb]".')
    runs = C.expand([run] if isinstance(run, str) else run)
    arms = {arm: [C.read_metrics(r) for r in dirs] for arm, dirs in C.group(runs, label).items()}
    metrics = C.check_metrics(arms, metrics, CURVES)
    names = {arm: f"{arm} ({len(series)} runs)" if len(series) > 1 else arm for arm, series in arms.items()}
    out_dir = Path(out)
    curves = plots.training_curves({names[arm]: {m: C.by_step(series, m) for m in metrics} for arm, series in arms.items()},
                                   metrics, out_dir / "curves.png", title="mean over each arm's runs, band ± std")
    ends = {names[arm]: C.final_profile(series, [q for q, _ in C.PROFILE]) for arm, series in arms.items()}
    profile = plots.layer_profile({a: means for a, (means, _) in ends.items()}, out_dir / "profile.png", C.PROFILE,
                                  "per layer at the last logged step: mean over each arm's runs ± std", {a: stds for a, (_, stds) in ends.items()})
    lines = ["# Training runs compared", "", f"{len(runs)} runs in {len(arms)} arms. Each cell is the metric's value at the last "
             "step the run logged it: the mean over the arm's runs ± their standard deviation (sample std, n - 1); an arm of "
             "one run shows its value alone.", "", *C.table(arms, metrics), "", f"![curves]({curves.name})", "", f"![profile]({profile.name})", ""]
    (out_dir / "summary.md").write_text("\n".join(lines))
    print(f"wrote {out_dir / 'summary.md'}, {curves} and {profile}")


def _yaml12_loader():
    """A YAML loader whose booleans are only true/false (YAML 1.2), for values given on the command
    line: YAML 1.1 reads off/on/yes/no as booleans, so `--label "[off, learned]"` or `--tokens "[on,
    off]"` would not be strings. Bool options still take yes/no (jsonargparse parses them itself)."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        yaml_implicit_resolvers = {first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
                                   for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
    return lambda text: yaml.load(text, Loader=Loader), (yaml.YAMLError,)


def main(args: list[str] | None = None):
    import jsonargparse

    quiet()
    load, errors = _yaml12_loader()
    jsonargparse.set_loader("yaml12", load, errors)
    with one_line_errors():
        return CLI([run, compare, export, profile, truncate, interpolate], args=args, parser_mode="yaml12")
