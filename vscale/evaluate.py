"""Measure trained checkpoints side by side: perplexity, the method §3 profile, W8A8 range
sensitivity and needle retrieval (docs/method.md §5). Needle retrieval and lm-eval tasks run in
full precision and again under each W8A8 mode, where the paper saw the baseline's retrieval
collapse. Every measurement of every checkpoint is isolated: a failure is recorded in the results
and the others go on."""

import contextlib
import math
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vscale.data import PackedTextData, split_batch
from vscale.diagnostics import check_seq_len, diagnose_batches
from vscale.hf import check_model, from_pretrained, vscale_modules
from vscale.hub import from_hub


@dataclass
class Loaded:
    """A checkpoint ready to measure, and what produced it."""

    model: torch.nn.Module
    path: str
    vscale: str
    hparams: dict = field(default_factory=dict)
    data: dict | None = None
    seed: int | None = None


def _init_args(hparams) -> dict:
    """Saved hyperparameters as constructor arguments (LightningCLI adds a private `_instantiator`)."""
    return {k: v for k, v in dict(hparams).items() if not k.startswith("_")}


def load_checkpoint(path: str) -> Loaded:
    """A Lightning checkpoint of this project (a file) or a Hugging Face model (directory or hub name)."""
    from vscale.module import VScaleLM

    if Path(path).is_file():
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise ValueError(f"checkpoint {path!r} cannot be read ({type(e).__name__}: {e}); give a .ckpt written by train.py or a model directory.") from e
        hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
        if not hp or "state_dict" not in ckpt or "vscale" not in hp:
            raise ValueError(f"checkpoint {path!r} is not a vscale training checkpoint (no hyper_parameters/state_dict); give a .ckpt written by train.py.")
        hp, data = _init_args(hp), _init_args(ckpt.get("datamodule_hyper_parameters") or {}) or None
        module = VScaleLM(**{**hp, "compile": False})  # measured eagerly; a compiled run's weights are the same
        module.load_state_dict(ckpt["state_dict"])
        return Loaded(module.model.eval(), path, hp["vscale"], hp, data, data.get("seed") if data else None)
    if not Path(path).is_dir() and (path.endswith(".ckpt") or path.startswith(("/", ".", "~"))):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist; give a .ckpt written by train.py, a model directory or a hub name.")
    model = from_hub(from_pretrained, path, "--ckpt", dtype=torch.float32)
    return Loaded(model.eval(), path, vscale_modules(model)[0].mode if vscale_modules(model) else "off")


def eval_batches(data: PackedTextData, n: int) -> list[torch.Tensor]:
    data.setup("validate")
    batches = [split_batch(b)[0] for _, b in zip(range(n), data.val_dataloader())]
    if not batches:
        raise ValueError("eval data: the validation split gave no rows; give more text or a shorter data.seq_len.")
    return batches


PAPER_CONTEXT_LENS = (1024, 2048)
"""The needle context lengths of the paper's protocol (docs/method.md §5)."""


def needle_lengths(seq_len: int, max_positions: int) -> list[int]:
    """Default needle context lengths: the paper's 1024 and 2048, the eval rows' length and twice
    it (beyond the trained length for a model trained on those rows), up to twice the rows'
    length and as far as every model's positions (max_position_embeddings) reach."""
    return sorted(n for n in {*PAPER_CONTEXT_LENS, seq_len, 2 * seq_len} if n <= min(2 * seq_len, max_positions))


def check_fits(loaded: Loaded, tokenizer, seq_len: int, context_lens: list[int], lm_eval_lens: list[int] = ()) -> None:
    """Model type, vocabulary and positions checked before any measurement."""
    lengths = {"--seq_len": seq_len, **({"--needle_context_lens": max(context_lens)} if context_lens else {}),
               **({"--lm_eval_max_seq_lengths": max(lm_eval_lens)} if lm_eval_lens else {})}
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


RULER_ANSWER_TOKENS = 128
"""Tokens RULER's tasks reserve for the answer inside each `max_seq_lengths` length."""


def lm_eval_manager(tasks: list[str], include_path: str | None, metadata: dict | None = None):
    """lm-evaluation-harness's TaskManager for `tasks`; unknown names fail. Only the local YAMLs of
    `include_path` are indexed when they define every task (a fraction of a second), else
    lm-eval's own task files too (about 20 s on 2 cores). `metadata` reaches every task: RULER's
    synthetic tasks read `tokenizer` and `max_seq_lengths` from it."""
    from lm_eval.tasks import TaskManager

    if include_path:
        local = TaskManager(include_path=include_path, include_defaults=False, metadata=metadata)
        if set(tasks) <= set(local.all_tasks):
            return local
    manager = TaskManager(include_path=include_path, metadata=metadata)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise ValueError(f"--lm_eval_tasks: unknown task(s) {unknown}; list them with `lm-eval ls tasks`, or define local ones in --lm_eval_include_path.")
    return manager


def _without_placeholders(scores: dict) -> dict:
    """One task's scores without RULER's placeholders: a metric named by a sequence length that no
    sample had (reported as -1), and its stderr."""
    absent = {m.split(",")[0] for m, v in scores.items() if m.split(",")[0].isdigit() and v == -1}
    return {m: v for m, v in scores.items() if m.split(",")[0].removesuffix("_stderr") not in absent}


def lm_eval(model, tokenizer, task: str, manager, limit: int | None = None, batch_size: int = 8) -> dict:
    """One lm-evaluation-harness task (or group) on the model instance itself, V-scale and any W8A8
    hooks included (a plain `from_pretrained` of an export would drop them); {task: {metric:
    value}} for it and its subtasks, without RULER's placeholders for lengths it did not run."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    results = simple_evaluate(model=lm, tasks=[task], task_manager=manager, limit=limit, log_samples=False)["results"]
    return {name: _without_placeholders(scores) for name, scores in results.items()}


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


def evaluate_checkpoint(loaded: Loaded, batches, calibration, tokenizer, texts, quant_modes, needle_context_lens, needle_seeds, needle_n, trained_len,
                        lm_eval_tasks=(), lm_eval_manager=None, lm_eval_limit=None) -> dict:
    """Every measurement of one checkpoint: {'results': ..., 'errors': ...}. Needle retrieval and
    lm-eval run at each precision, `FULL` and every W8A8 mode, under one calibration per mode;
    their results are keyed by precision first."""
    from vscale import needle, quant

    model, results, errors = loaded.model, {}, {}
    measure("perplexity", results, errors, perplexity, model, batches)
    profiled = measure("profile", {}, errors, diagnose_batches, model, batches)
    norms = None
    if profiled:
        results["profile"], all_norms, results["heads"] = profiled
        norms = all_norms[:, : batches[0].shape[0]]  # the violin shows the first batch
    for precision in (FULL, *quant_modes):
        with contextlib.ExitStack() as stack:
            if precision != FULL:
                key = f"w8a8_{precision}"
                if measure(key, {}, errors, stack.enter_context, quant.w8a8(model, precision, calibration)) is None:
                    continue  # calibration failed: recorded under the mode, nothing else measured in it
                measure(key, results.setdefault("w8a8", {}), errors, perplexity, model, batches)
            for kind in needle.KINDS if needle_context_lens else ():
                by_length = results.setdefault("needle", {}).setdefault(precision, {}).setdefault(kind, {})
                for length in needle_context_lens:
                    row = measure(f"{precision}/needle_{kind}@{length}", {}, errors, needle.evaluate, model, tokenizer, texts, [length], needle_seeds, needle_n, kind)
                    if row:
                        by_length[length] = row[length] | {"beyond_trained_length": trained_len is not None and length > trained_len}
            for task in lm_eval_tasks:  # one call each: a task that cannot run (a length it cannot fill) leaves the others
                scores = measure(f"{precision}/lm_eval/{task}", {}, errors, lm_eval, model, tokenizer, task, lm_eval_manager, lm_eval_limit)
                results.setdefault("lm_eval", {}).setdefault(precision, {}).update(scores or {})
    return {"results": results, "errors": errors, "gradient_norms": norms}


SOURCE_FIELDS = ("prepared", "train_files", "val_files", "dataset", "dataset_config")


def eval_data(overrides: dict, fallback: dict | None) -> PackedTextData:
    """The eval data: the first checkpoint's own training data config, with the given fields
    replacing it. A new source (files or a hub dataset) replaces the recorded one entirely; its
    first rows also calibrate the static W8A8 ranges."""
    args = dict(fallback or {})
    given = {k: v for k, v in overrides.items() if v is not None}
    if given.keys() & {"val_files", "dataset"}:
        args = {k: v for k, v in args.items() if k not in SOURCE_FIELDS}
        given.setdefault("train_files", given.get("val_files"))
    args.update(given)
    if "tokenizer" not in args:
        raise ValueError("eval data: give --tokenizer and --val_files (or --dataset), or a train.py checkpoint, which records its data config.")
    check_seq_len(args.get("seq_len", 1024), "--seq_len")
    return PackedTextData(**args)
