"""Evaluate and compare checkpoints (SPEC §3 and §5).

    python eval.py run --ckpt "[A.ckpt, B.ckpt]" --label "[baseline, vscale]" --out eval/tiny
    python eval.py compare --run "[runs/tiny/off-seed0, runs/tiny/learned-seed0]" --out eval/tiny-curves
    python eval.py export --ckpt runs/tiny/learned-seed0/checkpoints/last.ckpt --out export/tiny-learned
"""

import csv
import json
import random
from pathlib import Path

import torch
from jsonargparse import CLI
from tqdm import tqdm

from vscale import evaluate as E
from vscale import plots
from vscale.quant import QUANT_MODES, check_quant_mode
from vscale.report import log_to_wandb, render

CURVES = ["train/loss", "val/loss", "gsink/ratio/median", "sink/rate/mean", "act/h_out_ratio/max"]


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
    needle_seeds: list[int] = [0, 1, 2],
    needle_n: int = 10,
    seed: int = 0,
    lm_eval_tasks: list[str] = [],
    lm_eval_include_path: str | None = None,
    lm_eval_limit: int | None = None,
    wandb: bool = False,
    wandb_project: str = "vscale",
    wandb_group: str | None = None,
):
    """Measure checkpoints side by side; writes results.json, report.md and PNGs into `out`.

    Args:
        ckpt: Checkpoints: a train.py .ckpt, or a Hugging Face model directory or hub name.
        label: One label per checkpoint (default: the checkpoint paths).
        out: Output directory.
        tokenizer: Eval tokenizer (default: the first .ckpt's training data config, as are the data fields below).
        val_files: Local eval text files.
        dataset: Hub eval dataset (streamed).
        dataset_config: Hub dataset configuration.
        seq_len: Tokens per eval row.
        batch_size: Rows per eval batch.
        batches: Eval batches for perplexity and the SPEC §3 profile.
        calib_batches: Training batches that calibrate the static W8A8 ranges.
        quant: W8A8 modes (SPEC §5): per_token, per_tensor, per_tensor_down_proj; [] skips them.
        needle_context_lens: Needle-retrieval context lengths (default: seq_len, and twice it where the models address it); [] skips it.
        needle_seeds: Seeds of the needle cases; accuracy is mean and std over them.
        needle_n: Needle cases per seed and context length.
        seed: Seed of everything random in the evaluation.
        lm_eval_tasks: lm-evaluation-harness tasks run on each model with its V-scale (needs `pip install "lm-eval[hf]"`).
        lm_eval_include_path: Directory of local lm-eval task YAMLs.
        lm_eval_limit: Examples per lm-eval task (None: all).
        wandb: Also log the tables and figures to wandb (offline without credentials).
        wandb_project: wandb project.
        wandb_group: wandb group, e.g. the experiment the checkpoints come from.
    """
    if not ckpt:
        raise ValueError('--ckpt: give one or more checkpoints, e.g. --ckpt "[a.ckpt, b.ckpt]".')
    labels = label or ckpt
    if len(labels) != len(ckpt) or len(set(labels)) != len(labels):
        raise ValueError(f"--label: give one distinct label per --ckpt ({len(ckpt)} checkpoints, labels {labels}).")
    for mode in quant:
        check_quant_mode(mode)
    manager = E.check_lm_eval_tasks(lm_eval_tasks, lm_eval_include_path) if lm_eval_tasks else None
    torch.manual_seed(seed)
    random.seed(seed)
    loaded = {l: E.load_checkpoint(c) for l, c in tqdm(list(zip(labels, ckpt)), desc="loading")}
    first = next((x.data for x in loaded.values() if x.data), None)
    data = E.eval_data({"tokenizer": tokenizer, "val_files": val_files, "dataset": dataset, "dataset_config": dataset_config,
                        "seq_len": seq_len, "batch_size": batch_size}, first)
    seq = data.hparams.seq_len
    max_pos = min(x.model.config.max_position_embeddings for x in loaded.values())
    lens = [n for n in (seq, 2 * seq) if n <= max_pos] if needle_context_lens is None else needle_context_lens
    for x in loaded.values():
        E.check_fits(x, data.tokenizer, seq, lens)

    eval_rows = E.eval_batches(data, batches)
    data.setup("fit")
    calibration = [b for _, b in zip(range(calib_batches), data.train_dataloader())]
    texts = data.validation_texts() if lens else []
    results = {"eval": {"ckpt": ckpt, "labels": labels, "data": dict(data.hparams), "batches": batches, "calib_batches": calib_batches,
                        "quant": quant, "needle_context_lens": lens, "needle_seeds": needle_seeds, "needle_n": needle_n, "seed": seed,
                        "lm_eval_tasks": lm_eval_tasks},
               "checkpoints": {}}
    norms = {}
    for name, x in tqdm(loaded.items(), desc="checkpoints"):
        measured = E.evaluate_checkpoint(x, eval_rows, calibration, data.tokenizer, texts, quant, lens, needle_seeds, needle_n, trained_len=(x.data or {}).get("seq_len"),
                                        lm_eval_tasks=lm_eval_tasks, lm_eval_manager=manager, lm_eval_limit=lm_eval_limit)
        if measured["gradient_norms"] is not None:
            norms[name] = measured["gradient_norms"]
        results["checkpoints"][name] = {"path": x.path, "vscale": x.vscale, "config": x.hparams, "data": x.data, "seed": x.seed,
                                        "results": measured["results"], "errors": measured["errors"]}

    out_dir = Path(out)
    profiles = {k: c["results"]["profile"] for k, c in results["checkpoints"].items() if "profile" in c["results"]}
    figures = [
        plots.layer_profile(profiles, out_dir / "sink_rate.png", [("sink/rate", "sink rate")]),
        plots.layer_profile(profiles, out_dir / "token0_ratio.png", [("act/h_out_ratio", "h_out token-0 / early"), ("act/r_mlp_ratio", "r_mlp token-0 / early")]),
        plots.layer_profile(profiles, out_dir / "gsink_ratio.png", [("gsink/ratio", "gradient-sink ratio R_GS")]),
        plots.gradient_violin(norms, out_dir / "grad_norm_violin.png", "log10 ||dL/dh~_t|| by layer; token 0 marked"),
    ]
    results["figures"] = [f.name for f in figures]
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out_dir / "report.md").write_text(render(results))
    if wandb:
        log_to_wandb(results, out_dir, wandb_project, wandb_group)
    print(f"wrote {out_dir / 'report.md'}, {out_dir / 'results.json'} and {len(figures)} figures")
    return results


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


def read_metrics(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """A run's metrics.csv as {name: [(step, value), ...]}."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"--run {run_dir}: no metrics.csv there; give a run directory written by train.py (runs/<experiment>/<name>).")
    series: dict[str, list[tuple[int, float]]] = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            for name, value in row.items():
                if value and name not in ("step", "epoch"):
                    series.setdefault(name, []).append((int(row["step"]), float(value)))
    return series


def compare(run: list[str] | None = None, label: list[str] | None = None, out: str = "compare", metrics: list[str] = CURVES):
    """Training curves of two or more runs together: PNG and a markdown summary of final values.

    Args:
        run: Run directories written by train.py (holding metrics.csv).
        label: One label per run (default: the run directory names).
        out: Output directory.
        metrics: Metric names to draw.
    """
    if not run:
        raise ValueError('--run: give two or more run directories, e.g. --run "[runs/tiny/off-seed0, runs/tiny/learned-seed0]".')
    labels = label or [Path(r).name for r in run]
    if len(labels) != len(run):
        raise ValueError(f"--label: give one label per --run ({len(run)} runs, {len(labels)} labels).")
    series = {l: read_metrics(Path(r)) for l, r in zip(labels, run)}
    out_dir = Path(out)
    figure = plots.training_curves(series, metrics, out_dir / "curves.png")
    lines = ["# Training runs compared", "", "| run | " + " | ".join(metrics) + " |", "|" + " --- |" * (len(metrics) + 1)]
    for l, s in series.items():
        lines.append(f"| {l} | " + " | ".join(f"{s[m][-1][1]:.4g} (step {s[m][-1][0]})" if s.get(m) else "-" for m in metrics) + " |")
    lines += ["", f"![curves]({figure.name})", ""]
    (out_dir / "summary.md").write_text("\n".join(lines))
    print(f"wrote {out_dir / 'summary.md'} and {figure}")


if __name__ == "__main__":
    CLI([run, compare, export])
