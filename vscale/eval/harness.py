"""lm-evaluation-harness tasks (RULER's needle tasks among them) on the model instance itself, V-scale
and any W8A8 hooks included. lm-eval is an optional extra (`pip install "lm-eval[hf,ruler]"`), so
it is imported inside the functions that use it."""

from vscale.errors import ConfigError

RULER_ANSWER_TOKENS = 128
"""Tokens RULER's tasks reserve for the answer inside each `max_seq_lengths` length."""


def lm_eval_manager(tasks: list[str], include_path: str | None, metadata: dict | None = None):
    """lm-evaluation-harness's TaskManager for `tasks`; unknown names fail. Only the local YAMLs of
    `include_path` are indexed when they define every task (a fraction of a second), else
    lm-eval's own task files too (about 20 s on 2 cores). `metadata` reaches every task: RULER's
    synthetic tasks read `tokenizer` and `max_seq_lengths` from it."""
    from lm_eval.tasks import TaskManager  # optional extra

    if include_path:
        local = TaskManager(include_path=include_path, include_defaults=False, metadata=metadata)
        if set(tasks) <= set(local.all_tasks):
            return local
    manager = TaskManager(include_path=include_path, metadata=metadata)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise ConfigError(
            f"--lm_eval_tasks: unknown task(s) {unknown}; list them with `lm-eval ls tasks`, "
            "or define local ones in --lm_eval_include_path."
        )
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
    from lm_eval import simple_evaluate  # optional extra
    from lm_eval.models.huggingface import HFLM  # optional extra

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    results = simple_evaluate(model=lm, tasks=[task], task_manager=manager, limit=limit, log_samples=False)["results"]
    return {name: _without_placeholders(scores) for name, scores in results.items()}


def managers(tasks: list[str], include_path: str | None, tokenizer: str, lengths: list[int], limit: int | None) -> list:
    """The TaskManagers the tasks run under: one for all `lengths` (RULER's `max_seq_lengths`), or, with a `limit`,
    one per length. lm-eval keeps the first `limit` documents of a task, and RULER's documents come grouped by
    length, so one call with a limit below the samples per length would evaluate the first length only."""
    if not tasks:
        return []
    groups = [[n] for n in lengths] if limit is not None and len(lengths) > 1 else [lengths]
    return [
        lm_eval_manager(tasks, include_path, {"tokenizer": tokenizer, "max_seq_lengths": group}) for group in groups
    ]


def evaluate(model, tokenizer, task: str, managers: list, limit: int | None = None) -> dict:
    """`lm_eval` of the task under each manager (each length, with a limit), its scores merged per (sub)task."""
    merged: dict[str, dict] = {}
    for manager in managers:
        for name, scores in lm_eval(model, tokenizer, task, manager, limit).items():
            merged.setdefault(name, {}).update(scores)
    return merged
