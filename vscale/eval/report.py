"""results.json -> report.md: one table per measurement, checkpoints side by side, each table
saying which direction is better, the best value in bold (none on a tie)."""

import math

from vscale.eval.needle import KINDS

FULL = "full"  # vscale.eval.measure.FULL, not imported: the report needs no model code

PROFILE_COLUMNS = (
    ("sink/rate/mean", "sink rate (mean)", None),
    ("sink/rate/max", "sink rate (max)", None),
    ("sink/m0/mean", "M_0 (mean)", None),
    ("sink/s0/mean", "S_0 (mean)", None),
    ("gsink/ratio/median", "R_GS (median)", "min"),
    ("gsink/ratio_summed/median", "R_GS batch-summed (median)", "min"),
    ("act/h_out_ratio/mean", "h_out t0/early (mean)", "min"),
    ("act/h_out_ratio/max", "h_out t0/early (max)", "min"),
    ("act/h_out_t0/mean", "h_out t0 (mean)", "min"),
    ("act/r_mlp_t0/mean", "r_mlp t0 (mean)", "min"),
)


DIRECTION_WORDS = {"min": "lower is better", "max": "higher is better"}
LM_EVAL_BETTER = {
    "acc": "max",
    "acc_norm": "max",
    "exact_match": "max",
    "f1": "max",
    "perplexity": "min",
    "word_perplexity": "min",
    "byte_perplexity": "min",
    "bits_per_byte": "min",
}
"""Better direction of lm-eval metrics; a metric named by a length (RULER's score at that length) is higher-better."""


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def directions(header: list[str], best: list[str | None]) -> str:
    """The line under a table's heading: which direction is better in which column."""
    if not best:
        return ""
    if best and best[0] and all(d == best[0] for d in best):
        text = (
            f"{DIRECTION_WORDS[best[0]]} in every column; "
            "the best value of a column is bold, none if checkpoints tie on it."
        )
    else:
        parts = [
            f"{DIRECTION_WORDS[d]}: {', '.join(h for h, b in zip(header, best) if b == d)}"
            for d in ("min", "max")
            if d in best
        ]
        if None in best:
            parts.append(f"no better direction, never bold: {', '.join(h for h, b in zip(header, best) if b is None)}")
        text = (
            "; ".join(parts) + ". The best value of a column with a direction is bold, none if checkpoints tie on it."
        )
    return text[0].upper() + text[1:]


def table(header: list[str], rows: dict[str, list], best: list[str | None]) -> str:
    """Markdown table, preceded by the line saying which direction is better. In each column
    with a direction ('min'/'max') the best number is bold, unless more than one checkpoint
    has it as printed (4 significant digits): a tie bolds nothing."""
    lines = [directions(header, best), ""] if best else []
    lines += ["| " + " | ".join(["checkpoint", *header]) + " |", "|" + " --- |" * (len(header) + 1)]
    winners = []
    for j, direction in enumerate(best):
        values = [r[j] for r in rows.values() if _number(r[j])]
        winner = _cell((min if direction == "min" else max)(values)) if direction and len(values) > 1 else None
        tied = sum(_number(r[j]) and _cell(r[j]) == winner for r in rows.values()) > 1
        winners.append(None if tied else winner)
    for label, row in rows.items():
        cells = []
        for value, winner in zip(row, winners):
            text = _cell(value)
            cells.append(f"**{text}**" if winner is not None and _number(value) and text == winner else text)
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines)


def get(results: dict, *keys, default="failed"):
    """results[k1][k2]...; an int key also finds its string form (results read back from JSON)."""
    for key in keys:
        if isinstance(results, dict) and key not in results and str(key) in results:
            key = str(key)
        if not isinstance(results, dict) or key not in results:
            return default
        results = results[key]
    return results


def eval_data_lines(results: dict) -> list[str]:
    """The eval data as a Markdown list of the fields that decide what was measured; fields
    that are None are left out."""
    ev, data = results["eval"], results["eval"].get("data") or {}
    fields = {"tokenizer": data.get("tokenizer")}
    if data.get("train_files") and data.get("val_files"):  # local files take precedence over a dataset (vscale.data)
        fields["files"] = ", ".join(data["val_files"])
    elif data.get("train_files"):
        fields["files"] = (
            f"{', '.join(data['train_files'])} (the held-out fraction {data.get('val_fraction')} of its documents)"
        )
    else:
        fields["dataset"] = data.get("dataset")
        fields["dataset config"] = data.get("dataset_config")
        fields["split"] = data.get("val_split")
    if data.get("messages_field"):
        fields["chat field"] = data["messages_field"]
        fields["chat template"] = data.get("chat_template")
    fields["seq_len"] = data.get("seq_len")
    fields["batch_size"] = data.get("batch_size")
    tokens = [get(c, "results", "perplexity", "tokens", default=None) for c in results["checkpoints"].values()]
    tokens = next((t for t in tokens if t), None)
    if tokens and data.get("seq_len"):
        rows = tokens // (data["seq_len"] - 1)
        fields["rows"] = (
            f"{rows} ({-(-rows // data['batch_size']) if data.get('batch_size') else '?'} batches, "
            f"{tokens} predicted tokens)"
        )
    else:
        fields["batches"] = f"{ev.get('batches')} (asked)"
    if ev.get("quant"):
        source = ", ".join(data["train_files"]) if data.get("train_files") else f"split {data.get('train_split')}"
        fields["W8A8 calibration"] = f"{ev.get('calib_batches')} training batches of {source}"
    fields["seed"] = ev.get("seed")
    return [f"- {name}: {value}" for name, value in fields.items() if value is not None]


def arms_section(arms: dict, modes: list[str]) -> list[str]:
    """Perplexity (full and under each W8A8 mode) and the sink and activation columns per arm, mean ± sample std over
    its checkpoints (`vscale.eval.runs.pool`); every other measurement is pooled in results.json."""
    keys = [
        ("perplexity.ppl", "ppl"),
        *((f"w8a8.w8a8_{m}.ppl", f"ppl {m}") for m in modes),
        *((f"profile.{name}", title) for name, title, _ in PROFILE_COLUMNS),
    ]

    def cell(arm: dict, key: str) -> str:
        s = arm["results"].get(key)
        return "-" if s is None else f"{s['mean']:.4g}" if s["std"] is None else f"{s['mean']:.4g} ± {s['std']:.2g}"

    header = ["arm", "checkpoints", *(title for _, title in keys)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += [
        f"| {name} | {len(arm['checkpoints'])} | " + " | ".join(cell(arm, k) for k, _ in keys) + " |"
        for name, arm in arms.items()
    ]
    return [
        "## Arms: mean ± std over each arm's checkpoints (seeds)",
        "",
        "Checkpoints whose labels or run directories differ only in -seed<N> form an arm; sample std (n - 1). Every "
        "measurement is pooled in results.json (`arms.<arm>.results`).",
        "",
        *lines,
        "",
    ]


def render(results: dict) -> str:
    """report.md: the eval data, then a section per measurement (the arms pooled, W8A8, needle retrieval and lm-eval
    only when measured), the failures and the figures."""
    ckpts, modes = results["checkpoints"], results["eval"]["quant"]
    out = ["# Evaluation report", "", "## Eval data", "", *eval_data_lines(results), ""]
    out += profile_sections(ckpts)
    if results.get("arms"):
        out += arms_section(results["arms"], modes)
    if modes:
        out += ["## W8A8 activation-range sensitivity (perplexity, method §5)", ""]
        rows = {
            k: [get(c, "results", "perplexity", "ppl"), *(get(c, "results", "w8a8", f"w8a8_{m}", "ppl") for m in modes)]
            for k, c in ckpts.items()
        }
        out += [table(["fp32", *modes], rows, ["min"] * (len(modes) + 1)), ""]
    precisions = [FULL, *modes]
    seeds = len(results["eval"].get("needle_seeds") or [])
    for kind in KINDS if results["eval"]["needle_context_lens"] else ():
        out += needle_section(ckpts, kind, results["eval"]["needle_context_lens"], precisions, seeds)
    for precision in precisions if results["eval"].get("lm_eval_tasks") else ():
        out += lm_eval_section(ckpts, precision)
    failures = {
        k: {m: e for m, e in c["errors"].items() if not m.endswith("_traceback")}
        for k, c in ckpts.items()
        if c["errors"]
    }
    if failures:
        out += (
            ["## Failed measurements", ""]
            + [f"- {k} / {m}: {e}" for k, errs in failures.items() for m, e in errs.items()]
            + [""]
        )
    out += ["## Figures", "", *(f"![{f}]({f})" for f in results["figures"]), ""]
    return "\n".join(out)


def profile_sections(ckpts: dict) -> list[str]:
    """The perplexity table and the method §3 profile table, a row per checkpoint."""
    out = [
        "## Perplexity",
        "",
        table(
            ["loss", "ppl"],
            {
                k: [get(c, "results", "perplexity", "loss"), get(c, "results", "perplexity", "ppl")]
                for k, c in ckpts.items()
            },
            ["min", "min"],
        ),
        "",
    ]
    out += [
        "## Sinks and activations (method §3, pooled over the eval rows)",
        "",
        "Lower means a weaker gradient sink and smaller token-0 activations (the V-scale goal). The sink rate, the "
        "fraction of heads with an attention sink on token 0, has no better direction: V-scale aims to keep sinks.",
        "",
    ]
    out += [
        table(
            [c[1] for c in PROFILE_COLUMNS],
            {k: [get(c, "results", "profile", name) for name, _, _ in PROFILE_COLUMNS] for k, c in ckpts.items()},
            [c[2] for c in PROFILE_COLUMNS],
        ),
        "",
    ]
    return out


def needle_section(ckpts: dict, kind: str, lens: list[int], precisions: list[str], seeds: int) -> list[str]:
    """Needle retrieval of one kind: accuracy by precision and context length, then its std over seeds."""
    out = [
        f"## Needle retrieval, {kind} (accuracy, mean over {seeds} seeds; full precision and under W8A8, method §5)",
        "",
    ]
    cells = [(p, n) for p in precisions for n in lens]
    beyond = {
        n
        for n in lens
        if any(
            get(c, "results", "needle", p, kind, n, "beyond_trained_length", default=False)
            for c in ckpts.values()
            for p in precisions
        )
    }
    header = [f"{p} @{n}{' (beyond trained)' if n in beyond else ''}" for p, n in cells]
    rows = {k: [get(c, "results", "needle", p, kind, n, "mean") for p, n in cells] for k, c in ckpts.items()}
    out += [table(header, rows, ["max"] * len(cells)), ""]
    out += [
        "std over seeds, same columns: "
        + "; ".join(
            f"{k}: "
            + ", ".join(f"{get(c, 'results', 'needle', p, kind, n, 'std', default=float('nan')):.3g}" for p, n in cells)
            for k, c in ckpts.items()
        ),
        "",
    ]
    return out


def lm_eval_section(ckpts: dict, precision: str) -> list[str]:
    """lm-evaluation-harness scores at one precision, a column per task and metric (their stderr aside)."""
    scores = {k: get(c, "results", "lm_eval", precision, default={}) for k, c in ckpts.items()}
    columns = sorted(
        {
            (t, m)
            for by_task in scores.values()
            for t, metrics in by_task.items()
            for m in metrics
            if "," in m and "stderr" not in m
        }
    )
    out = [f"## lm-evaluation-harness, {'full precision' if precision == FULL else f'W8A8 {precision}'}", ""]
    if not columns:
        return out + ["No scores: see Failed measurements.", ""]
    rows = {k: [get(by_task, t, m) for t, m in columns] for k, by_task in scores.items()}
    out += [
        table(
            [f"{t} {m.split(',')[0]}" for t, m in columns],
            rows,
            [LM_EVAL_BETTER.get(m.split(",")[0], "max" if m.split(",")[0].isdigit() else None) for _, m in columns],
        ),
        "",
    ]
    return out
