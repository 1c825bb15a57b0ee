"""`eval.py run`: measure checkpoints side by side (method §3 and §5); results.json, report.md and PNGs."""

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from vscale.cli_values import Ints, Strings, as_list
from vscale.data import PackedTextData, split_batch
from vscale.eval import harness, measure, plots, runs, violin
from vscale.eval.checkpoints import Loaded, eval_batches, eval_data, load_all, recorded_data
from vscale.eval.needle import KINDS as NEEDLE_KINDS
from vscale.eval.options import Checkpoints, EvalData
from vscale.eval.quant import QUANT_MODES, check_quant_mode
from vscale.eval.report import render
from vscale.eval.wandb_log import log_to_wandb


@dataclass
class RunOptions(EvalData, Checkpoints):
    """Measure checkpoints side by side; writes results.json, report.md and PNGs into `out`.

    Args:
        label: One label per checkpoint (default: the checkpoint paths). Checkpoints of one arm (labels, or run
            directory names, equal but for a -seed<N> suffix) are also pooled: each measurement as mean ± std over them
            (results.json `arms`, the report's Arms table).
        batches: Eval batches for perplexity and the method §3 profile (pooled over their rows).
        calib_batches: Training batches that calibrate the static W8A8 ranges.
        quant: W8A8 modes (docs/method.md §5): per_token, per_tensor, per_tensor_down_proj; [] skips them. Perplexity,
            needle retrieval and lm-eval tasks are measured under each.
        needle_context_lens: Needle-retrieval context lengths (default: the paper's 1024 and 2048, seq_len and twice it,
            up to twice seq_len and as far as the models' max_position_embeddings); [] skips it.
        needle_seeds: Seeds of the needle cases; accuracy is mean and std over them.
        needle_n: Needle cases per seed, context length and kind (single, single_uuid, multi).
        lm_eval_tasks: lm-evaluation-harness tasks run on each model with its V-scale, in full precision and under each
            W8A8 mode (needs `pip install "lm-eval[hf,ruler]"`), e.g. RULER's needle tasks [niah_single_1,
            niah_multikey_2, niah_multikey_3].
        lm_eval_include_path: Directory of local lm-eval task YAMLs.
        lm_eval_limit: Examples per lm-eval task and length (None: all); with several --lm_eval_max_seq_lengths each
            length gets its own lm-eval call, since lm-eval keeps a task's first examples and RULER's come grouped by
            length.
        lm_eval_max_seq_lengths: Lengths of RULER's synthetic tasks, given to lm-eval as task metadata with the eval
            tokenizer (default: the needle context lengths of at least 256; RULER keeps 128 of each for the answer).
        wandb: Also log the tables and figures to wandb (offline without credentials).
        wandb_project: wandb project.
        wandb_group: wandb group, e.g. the experiment the checkpoints come from.
    """

    batches: int = 8
    calib_batches: int = 4
    quant: Strings = field(default_factory=lambda: list(QUANT_MODES))
    needle_context_lens: Ints | None = None
    needle_seeds: Ints = field(default_factory=lambda: [0, 1, 2, 3, 4])
    needle_n: int = 10
    lm_eval_tasks: Strings = field(default_factory=list)
    lm_eval_include_path: str | None = None
    lm_eval_limit: int | None = None
    lm_eval_max_seq_lengths: Ints | None = None
    wandb: bool = False
    wandb_project: str = "vscale"
    wandb_group: str | None = None

    def __post_init__(self):
        super().__post_init__()
        for name in ("quant", "needle_context_lens", "needle_seeds", "lm_eval_tasks", "lm_eval_max_seq_lengths"):
            setattr(self, name, as_list(getattr(self, name)))
        for mode in self.quant:
            check_quant_mode(mode)
        if self.lm_eval_tasks:  # unknown names fail before loading; the tasks load later, with their metadata
            harness.lm_eval_manager(self.lm_eval_tasks, self.lm_eval_include_path)


def run(o: RunOptions) -> dict:
    """`RunOptions`: every measurement of every checkpoint, the arms pooled, the report and figures written."""
    torch.manual_seed(o.seed)
    random.seed(o.seed)
    loaded = load_all(o.ckpt, o.labels)
    data = eval_data(o, recorded_data(loaded))
    plan = _plan(loaded, data, o)
    results = {"eval": _record(o, loaded, data, plan), "checkpoints": {}}
    norms = _measure_all(loaded, plan, results)
    arms = runs.checkpoint_arms(o.ckpt, o.labels, o.label is not None)
    if any(len(members) > 1 for members in arms.values()):
        results["arms"] = runs.pool({k: c["results"] for k, c in results["checkpoints"].items()}, arms)
    out_dir = Path(o.out)
    results["figures"] = [f.name for f in _figures(results, norms, plan.needle_lens, o.quant, out_dir)]
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out_dir / "report.md").write_text(render(results))
    if o.wandb:
        log_to_wandb(results, out_dir, o.wandb_project, o.wandb_group)
    print(f"wrote {out_dir / 'report.md'}, {out_dir / 'results.json'} and {len(results['figures'])} figures")
    return results


def _plan(loaded: dict[str, Loaded], data: PackedTextData, o: RunOptions) -> measure.Plan:
    """Everything checked before any measurement, and the inputs every checkpoint is measured on:
    eval rows, calibration rows, needle filler text, the needle and RULER lengths."""
    seq = data.hparams.seq_len
    max_pos = min(x.model.config.max_position_embeddings for x in loaded.values())
    lens = measure.needle_lengths(seq, max_pos) if o.needle_context_lens is None else o.needle_context_lens
    ruler_lens = (
        [n for n in lens if n >= 2 * harness.RULER_ANSWER_TOKENS]
        if o.lm_eval_max_seq_lengths is None
        else o.lm_eval_max_seq_lengths
    )
    for x in loaded.values():
        measure.check_fits(x, data.tokenizer, seq, lens, ruler_lens if o.lm_eval_tasks else [])
    managers = harness.managers(
        o.lm_eval_tasks, o.lm_eval_include_path, data.hparams.tokenizer, ruler_lens, o.lm_eval_limit
    )
    rows = eval_batches(data, o.batches)
    data.setup("fit")
    calibration = [split_batch(b)[0] for _, b in zip(range(o.calib_batches), data.train_dataloader())]
    return measure.Plan(
        rows,
        calibration,
        data.tokenizer,
        data.validation_texts() if lens else [],
        o.quant,
        lens,
        o.needle_seeds,
        o.needle_n,
        o.lm_eval_tasks,
        ruler_lens,
        managers,
        o.lm_eval_limit,
    )


def _record(o: RunOptions, loaded: dict[str, Loaded], data: PackedTextData, plan: measure.Plan) -> dict:
    """What was measured on what, as results.json `eval` records it."""
    return {
        "ckpt": o.ckpt,
        "labels": list(loaded),
        "data": dict(data.hparams),
        "batches": o.batches,
        "calib_batches": o.calib_batches,
        "quant": o.quant,
        "needle_context_lens": plan.needle_lens,
        "needle_seeds": o.needle_seeds,
        "needle_n": o.needle_n,
        "seed": o.seed,
        "lm_eval_tasks": o.lm_eval_tasks,
        "lm_eval_max_seq_lengths": plan.lm_eval_lens if o.lm_eval_tasks else None,
    }


def _measure_all(loaded: dict[str, Loaded], plan: measure.Plan, results: dict) -> dict:
    """Every measurement of every checkpoint into `results`; the gradient norms of the violin, by label."""
    norms = {}
    for name, x in tqdm(loaded.items(), desc="checkpoints"):
        measured = measure.evaluate_checkpoint(x, plan)
        if measured["gradient_norms"] is not None:
            norms[name] = measured["gradient_norms"]
        results["checkpoints"][name] = {
            "path": x.path,
            "vscale": x.vscale,
            "config": x.hparams,
            "data": x.data,
            "seed": x.seed,
            "results": measured["results"],
            "errors": measured["errors"],
        }
    return norms


def _figures(results: dict, norms: dict, lens: list[int], quant: list[str], out_dir: Path) -> list[Path]:
    checkpoints = results["checkpoints"]
    profiles = {k: c["results"]["profile"] for k, c in checkpoints.items() if "profile" in c["results"]}
    figures = violin.eval_figures(profiles, norms, out_dir)
    heads = {k: c["results"]["heads"]["sink/alpha"] for k, c in checkpoints.items() if "heads" in c["results"]}
    if heads:
        figures.append(plots.alpha_heatmap(heads, out_dir))
    if lens:
        needles = {k: c["results"].get("needle", {}) for k, c in checkpoints.items()}
        figures.append(
            plots.needle_accuracy(
                needles, [measure.FULL, *quant], list(NEEDLE_KINDS), lens, out_dir / "needle_accuracy.png"
            )
        )
    return figures
