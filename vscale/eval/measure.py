"""Measure trained checkpoints side by side: perplexity, the method §3 profile, W8A8 range
sensitivity and needle retrieval (docs/method.md §5). Needle retrieval and lm-eval tasks run in
full precision and again under each W8A8 mode, where the paper saw the baseline's retrieval
collapse. Every measurement of every checkpoint is isolated: a failure is recorded in the results
and the others go on."""

import contextlib
import math
import traceback
from dataclasses import dataclass, field
from typing import Any

import torch

from vscale.diagnostics import diagnose_batches
from vscale.eval import harness, needle, quant
from vscale.eval.checkpoints import Loaded
from vscale.model import check_model

PAPER_CONTEXT_LENS = (1024, 2048)
"""The needle context lengths of the paper's protocol (docs/method.md §5)."""


def needle_lengths(seq_len: int, max_positions: int) -> list[int]:
    """Default needle context lengths: the paper's 1024 and 2048, the eval rows' length and twice
    it (beyond the trained length for a model trained on those rows), up to twice the rows'
    length and as far as every model's positions (max_position_embeddings) reach."""
    return sorted(n for n in {*PAPER_CONTEXT_LENS, seq_len, 2 * seq_len} if n <= min(2 * seq_len, max_positions))


def check_fits(loaded: Loaded, tokenizer, seq_len: int, context_lens: list[int], lm_eval_lens: list[int] = ()) -> None:
    """Model type, vocabulary and positions checked before any measurement."""
    lengths = {
        "--seq_len": seq_len,
        **({"--needle_context_lens": max(context_lens)} if context_lens else {}),
        **({"--lm_eval_max_seq_lengths": max(lm_eval_lens)} if lm_eval_lens else {}),
    }
    check_model(loaded.model.config, f"checkpoint {loaded.path!r}", tokenizer, "the eval tokenizer", lengths)


@torch.no_grad()
def perplexity(model, batches: list[torch.Tensor]) -> dict[str, float]:
    """Token-weighted mean next-token loss over the batches, and its exponential."""
    total, tokens = 0.0, 0
    for batch in batches:
        n = batch.numel() - batch.shape[0]
        total += model(input_ids=batch, labels=batch, use_cache=False).loss.item() * n
        tokens += n
    return {"loss": total / tokens, "ppl": math.exp(total / tokens), "tokens": tokens}


def measure(name: str, results: dict, errors: dict, fn, *args, **kwargs):
    """Run one measurement; record its result, or its error, under `name`."""
    try:
        results[name] = fn(*args, **kwargs)
    except Exception as e:  # a measurement's failure is data, not a crash of the whole evaluation
        errors[name] = f"{type(e).__name__}: {e}"
        errors[f"{name}_traceback"] = traceback.format_exc(limit=4)
    return results.get(name)


FULL = "full"
"""The precision key of measurements on the unquantized (float32) model."""


@dataclass
class Plan:
    """What every checkpoint is measured on, and how: everything checked before the first measurement."""

    rows: list[torch.Tensor]
    """Eval batches of perplexity and the method §3 profile."""
    calibration: list[torch.Tensor]
    """Training batches that calibrate the static W8A8 ranges."""
    tokenizer: Any
    texts: list[str]
    """The eval documents needle prompts are filled from."""
    quant: list[str]
    needle_lens: list[int]
    needle_seeds: list[int]
    needle_n: int
    lm_eval_tasks: list[str] = field(default_factory=list)
    lm_eval_lens: list[int] = field(default_factory=list)
    """RULER's `max_seq_lengths`."""
    lm_eval_managers: list = field(default_factory=list)
    """One lm-eval TaskManager per group of RULER lengths (`harness.managers`)."""
    lm_eval_limit: int | None = None


def evaluate_checkpoint(loaded: Loaded, plan: Plan) -> dict:
    """Every measurement of one checkpoint: {'results': ..., 'errors': ...}. Needle retrieval and
    lm-eval run at each precision, `FULL` and every W8A8 mode, under one calibration per mode;
    their results are keyed by precision first."""
    model, results, errors = loaded.model, {}, {}
    measure("perplexity", results, errors, perplexity, model, plan.rows)
    profiled = measure("profile", {}, errors, diagnose_batches, model, plan.rows)
    norms = None
    if profiled:
        results["profile"], all_norms, results["heads"] = profiled
        norms = all_norms[:, : plan.rows[0].shape[0]]  # the violin shows the first batch
    for precision in (FULL, *plan.quant):
        with contextlib.ExitStack() as stack:
            if precision != FULL:
                key = f"w8a8_{precision}"
                if (
                    measure(key, {}, errors, stack.enter_context, quant.w8a8(model, precision, plan.calibration))
                    is None
                ):
                    continue  # calibration failed: recorded under the mode, nothing else measured in it
                measure(key, results.setdefault("w8a8", {}), errors, perplexity, model, plan.rows)
            _needles(loaded, plan, precision, results, errors)
            for task in (
                plan.lm_eval_tasks
            ):  # one call each: a task that cannot run (a length it cannot fill) leaves the others
                scores = measure(
                    f"{precision}/lm_eval/{task}",
                    {},
                    errors,
                    harness.evaluate,
                    model,
                    plan.tokenizer,
                    task,
                    plan.lm_eval_managers,
                    plan.lm_eval_limit,
                )
                results.setdefault("lm_eval", {}).setdefault(precision, {}).update(scores or {})
    return {"results": results, "errors": errors, "gradient_norms": norms}


def _needles(loaded: Loaded, plan: Plan, precision: str, results: dict, errors: dict) -> None:
    """Needle retrieval of every kind and length at one precision, each length marked beyond the trained rows or not."""
    trained_len = (loaded.data or {}).get("seq_len")
    for kind in needle.KINDS if plan.needle_lens else ():
        by_length = results.setdefault("needle", {}).setdefault(precision, {}).setdefault(kind, {})
        for length in plan.needle_lens:
            row = measure(
                f"{precision}/needle_{kind}@{length}",
                {},
                errors,
                needle.evaluate,
                loaded.model,
                plan.tokenizer,
                plan.texts,
                [length],
                plan.needle_seeds,
                plan.needle_n,
                kind,
            )
            if row:
                by_length[length] = row[length] | {
                    "beyond_trained_length": trained_len is not None and length > trained_len
                }
