"""results.json -> report.md: one table per measurement, checkpoints side by side, best in bold."""

PROFILE_COLUMNS = (
    ("sink/rate/mean", "sink rate (mean)", None),
    ("sink/rate/max", "sink rate (max)", None),
    ("gsink/ratio/median", "R_GS (median)", "min"),
    ("act/h_out_ratio/mean", "h_out t0/early (mean)", "min"),
    ("act/h_out_ratio/max", "h_out t0/early (max)", "min"),
    ("act/h_out_t0/mean", "h_out t0 (mean)", "min"),
    ("act/r_mlp_t0/mean", "r_mlp t0 (mean)", "min"),
)


def table(header: list[str], rows: dict[str, list], best: list[str | None]) -> str:
    """Markdown table; in each column with a direction ('min'/'max') the best number is bold."""
    lines = ["| " + " | ".join(["checkpoint", *header]) + " |", "|" + " --- |" * (len(header) + 1)]
    winners = []
    for j, direction in enumerate(best):
        values = [r[j] for r in rows.values() if isinstance(r[j], (int, float))]
        winners.append((min if direction == "min" else max)(values) if direction and len(values) > 1 else None)
    for label, row in rows.items():
        cells = []
        for value, winner in zip(row, winners):
            text = f"{value:.4g}" if isinstance(value, (int, float)) else str(value)
            cells.append(f"**{text}**" if winner is not None and value == winner else text)
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines)


def get(results: dict, *keys, default="failed"):
    for key in keys:
        if not isinstance(results, dict) or key not in results:
            return default
        results = results[key]
    return results


def render(results: dict) -> str:
    ckpts = results["checkpoints"]
    out = ["# Evaluation report", "", f"Eval data: `{results['eval']['data']}`; seed {results['eval']['seed']}.", ""]
    out += ["## Perplexity", "", table(["loss", "ppl"], {k: [get(c, "results", "perplexity", "loss"), get(c, "results", "perplexity", "ppl")] for k, c in ckpts.items()}, ["min", "min"]), ""]
    out += ["## Sinks and activations (SPEC §3, mean over eval batches)", ""]
    out += [table([c[1] for c in PROFILE_COLUMNS], {k: [get(c, "results", "profile", name) for name, _, _ in PROFILE_COLUMNS] for k, c in ckpts.items()}, [c[2] for c in PROFILE_COLUMNS]), ""]
    modes = results["eval"]["quant"]
    if modes:
        out += ["## W8A8 activation-range sensitivity (perplexity, SPEC §5)", ""]
        rows = {k: [get(c, "results", "perplexity", "ppl"), *(get(c, "results", "w8a8", f"w8a8_{m}", "ppl") for m in modes)] for k, c in ckpts.items()}
        out += [table(["fp32", *modes], rows, ["min"] * (len(modes) + 1)), ""]
    lens = results["eval"]["needle_context_lens"]
    for kind in ("single", "multi") if lens else ():
        out += [f"## Needle retrieval, {kind} (accuracy mean ± std over seeds)", ""]
        rows = {}
        for k, c in ckpts.items():
            acc = get(c, "results", f"needle_{kind}", default={})
            rows[k] = [acc[n]["mean"] if n in acc else "failed" for n in lens]
        header = [f"{n}{' (beyond trained)' if any(get(c, 'results', f'needle_{kind}', n, 'beyond_trained_length', default=False) for c in ckpts.values()) else ''}" for n in lens]
        out += [table(header, rows, ["max"] * len(lens)), ""]
        out += [f"std: " + "; ".join(f"{k}: " + ", ".join(f"{get(c, 'results', f'needle_{kind}', n, 'std', default=float('nan')):.3g}" for n in lens) for k, c in ckpts.items()), ""]
    tasks = results["eval"].get("lm_eval_tasks") or []
    if tasks:
        columns = sorted({(t, m) for c in ckpts.values() for t, scores in get(c, "results", "lm_eval", default={}).items()
                          for m in scores if "," in m and "stderr" not in m})
        out += ["## lm-evaluation-harness", ""]
        rows = {k: [get(c, "results", "lm_eval", t, m) for t, m in columns] for k, c in ckpts.items()}
        higher = {"acc": "max", "perplexity": "min"}
        out += [table([f"{t} {m.split(',')[0]}" for t, m in columns], rows, [higher.get(m.split(",")[0]) for _, m in columns]), ""]
    failures = {k: {m: e for m, e in c["errors"].items() if not m.endswith("_traceback")} for k, c in ckpts.items() if c["errors"]}
    if failures:
        out += ["## Failed measurements", ""] + [f"- {k} / {m}: {e}" for k, errs in failures.items() for m, e in errs.items()] + [""]
    out += ["## Figures", "", *(f"![{f}]({f})" for f in results["figures"]), ""]
    return "\n".join(out)


def log_to_wandb(results: dict, out_dir, project: str, group: str | None) -> str:
    """The report's tables and figures as one wandb run (job_type eval); returns its directory."""
    import wandb

    from vscale.config import wandb_offline

    run = wandb.init(project=project, group=group, job_type="eval", dir=str(out_dir), config=results["eval"],
                     mode="offline" if wandb_offline() else "online")
    rows = []
    for label, c in results["checkpoints"].items():
        r = c["results"]
        rows.append([label, c["vscale"], get(r, "perplexity", "ppl", default=None),
                     *(get(r, "w8a8", f"w8a8_{m}", "ppl", default=None) for m in results["eval"]["quant"]),
                     *(get(r, "profile", name, default=None) for name, _, _ in PROFILE_COLUMNS)])
    columns = ["checkpoint", "vscale", "ppl", *(f"w8a8_{m}" for m in results["eval"]["quant"]), *(n for n, _, _ in PROFILE_COLUMNS)]
    run.log({"eval/summary": wandb.Table(columns=columns, data=rows),
             **{f"eval/{name.removesuffix('.png')}": wandb.Image(str(out_dir / name)) for name in results["figures"]}})
    run.finish()
    return run.dir
