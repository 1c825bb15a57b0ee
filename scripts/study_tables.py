"""The README's and docs/bb.md's study tables and claims, generated from the committed result files, so that no
number in the prose can differ from the runs it reports (tests/test_study_tables.py fails when one does).

    python scripts/study_tables.py             # rewrite every generated block
    python scripts/study_tables.py --check     # exit 1 naming the blocks that differ from their files
    python scripts/study_tables.py --upgrade   # first rebuild each study's comparisons from its late values

A block sits between `<!-- generated: NAME -->` and `<!-- end generated: NAME -->`; NAME's result file is
`docs/results/NAME.json` (an `eval.py compare` summary.json, the sweep summary of scripts/bb_sweep.py, or an `eval.py
run` results.json).
"""

import argparse
import json
import re
import sys
from functools import partial
from pathlib import Path

from vscale.eval import stats
from vscale.eval.compare import analysis
from vscale.eval.needle import KINDS
from vscale.eval.verdicts import headline, median_cell, seeds_needed, summary_lines
from vscale.runs import late, read_metrics

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/bb.md", "docs/bb-peak.md", "docs/method.md")
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated: (?P=name) -->)", re.S)
HEADLINES = (
    ("gsink/ratio/max", "the gradient sink"),
    ("sink/alpha/max", "the attention sink"),
    ("act/v_ratio/min", "the value drain"),
    ("val/loss", "the validation loss"),
)
PEAK_HEADLINES = (
    ("act/h_out_ratio/max", "the residual peak"),
    ("act/h_out_t0/max", "the token-0 residual norm"),
    ("sink/rate/mean", "the sink rate"),
    ("gsink/ratio/median", "the gradient sink"),
    ("val/loss", "the validation loss"),
)
NEEDLE_NOUNS = {
    "needle/onset_step": "the retrieval onset step",
    "needle/onset_reached": "whether retrieval set in",
    "needle/full/single/128": "single-needle accuracy at 128 tokens",
    "needle/full/multi/128": "multi-needle accuracy at 128 tokens",
    "ppl/full": "the perplexity",
    "gsink/ratio/max": "the gradient sink",
    "sink/alpha/max": "the attention sink",
    "act/v_ratio/min": "the value drain",
    "act/h_out_ratio/max": "the residual peak",
    "val/loss": "the validation loss",
}
"""The needle study's nouns for its compared metrics; a W8A8 metric (needle/<mode>/..., needle/drop_<mode>/...,
ppl/<mode>) is named by `needle_noun`, any other by its column."""
NEEDLE_DROP = "needle/drop_per_tensor/single/128"
"""The paper's claim under W8A8: full precision minus per_tensor, single needle at 128 tokens."""
PAPER_03B = (  # docs/method.md §4: the paper's 0.3B at step 20000 (baseline, V-scale learned, backward-only)
    ("validation loss", "val/loss", (2.917, 2.907, 2.931)),
    ("sink rate, mean over layers", "sink/rate/mean", (0.617, 0.502, 0.458)),
    ("sink rate, max over layers", "sink/rate/max", (0.984, 0.998, 0.825)),
    ("h_out t0, mean over layers", "act/h_out_t0/mean", (1916, 346, 607)),
    ("h_out t0, max over layers", "act/h_out_t0/max", (2852, 617, 952)),
    ("h_out t0/early, mean over layers", "act/h_out_ratio/mean", (11.12, 3.03, 3.63)),
    ("r_mlp t0, mean over layers", "act/r_mlp_t0/mean", (346, 75, 113)),
    ("r_mlp t0, max over layers", "act/r_mlp_t0/max", (2333, 452, 433)),
    ("gradient sink, median over layers (0.3B: baseline, V-scale)", "gsink/ratio/median", (9.0, 6.3, None)),
)


def compared(record: dict, faces) -> list[tuple[str, str]]:
    """The (metric, noun) faces the study compared."""
    return [
        (metric, noun) for metric, noun in faces if any(metric in by_metric for by_metric in record["effects"].values())
    ]


def study(record: dict, faces=HEADLINES) -> str:
    """An `eval.py compare` summary: one sentence per face of the sink, what its seeds can resolve, then the table and
    the paired effects."""
    faces = compared(record, faces)
    return "\n".join(
        [
            *(f"**{headline(record, *face)}**" for face in faces),
            "",
            " ".join(seeds_needed(record, *face) for face in faces),
            "",
            *summary_lines(record),
        ]
    )


def headlines(record: dict, faces=HEADLINES) -> str:
    """A study's sentences alone (the README's short form; the whole block is in the study's own document)."""
    return "\n".join(f"- {headline(record, *face)}" for face in compared(record, faces)) + "\n"


def upgrade(path: Path) -> None:
    """Rewrite a committed `eval.py compare` summary.json with the comparisons `eval.py compare` now makes (pairwise,
    adjusted p, halves), rebuilt from its late values: no run is needed."""
    record = json.loads(path.read_text())
    if "arms" in record and "late" in next(iter(record["arms"].values())):
        path.write_text(json.dumps(record | analysis(record), indent=1))


def sweep(record: dict) -> str:
    """The sweep of scripts/bb_sweep.py: per variant, the seeds that grow a sink under each dispatch, and those that
    flip."""
    dispatches = record["dispatches"]
    lines = [
        "| variant | "
        + " | ".join(f"seeds with a sink ({d})" for d in dispatches)
        + " | outcome differs between dispatches |",
        "|" + " --- |" * (len(dispatches) + 2),
    ]
    for name, v in record["variants"].items():
        grows = [f"{len(v['grows_sink'][d])}/{len(v['late_alpha_max'][d])}" for d in dispatches]
        flips = ", ".join(f"seed {s}" for s in v["flips"]) or "none"
        lines.append(f"| {name} (`{' '.join(v['overrides'])}`) | " + " | ".join(grows) + f" | {flips} |")
    return "\n".join(
        [
            *lines,
            "",
            "(A seed grows a sink when the late-window median of `sink/alpha/max` over the last "
            f"{record['window']:.0%} of its logged steps exceeds eps = {record['eps']}; unpinned runs, "
            "`--run.cpu_capability=null`.)",
            "",
        ]
    )


def needle(record: dict) -> str:
    """An `eval.py run` results.json: per checkpoint, perplexity and each needle kind's accuracy at each
    length, in full precision and under each W8A8 mode (mean ± population std over the needle seeds)."""
    ev = record["eval"]
    precisions = ["full", *ev["quant"]]
    lines = [
        "| checkpoint | measurement | " + " | ".join(["full precision", *(f"W8A8 {m}" for m in ev["quant"])]) + " |",
        "|" + " --- |" * (len(precisions) + 2),
    ]
    for label, c in record["checkpoints"].items():
        r = c["results"]
        ppl = [r["perplexity"]["ppl"], *(r["w8a8"][f"w8a8_{m}"]["ppl"] for m in ev["quant"])]
        lines.append(f"| {label} | perplexity | " + " | ".join(f"{x:.1f}" for x in ppl) + " |")
        for kind in KINDS:
            for length in ev["needle_context_lens"]:
                cells = [r["needle"][p][kind][str(length)] for p in precisions]
                lines.append(
                    f"| {label} | {kind} @{length} | "
                    + " | ".join(f"{x['mean']:.2f} ± {x['std']:.2f}" for x in cells)
                    + " |"
                )
    return "\n".join(
        [
            *lines,
            "",
            f"(Needle accuracy: {len(ev['needle_seeds'])} seeds x {ev['needle_n']} cases per kind and length, greedy "
            "decoding, exact match; lengths past the trained one are extrapolation.)",
            "",
        ]
    )


def needle_noun(metric: str) -> str:
    parts = metric.split("/")
    if metric in NEEDLE_NOUNS:
        return NEEDLE_NOUNS[metric]
    if parts[0] == "ppl":
        return f"the perplexity under W8A8 {parts[1]}"
    if parts[0] == "needle" and parts[1].startswith("drop_"):
        return f"the {parts[1].removeprefix('drop_')} drop of {parts[2]}-needle accuracy (full precision minus W8A8)"
    if parts[0] == "needle" and len(parts) == 4:
        return f"{parts[2]}-needle accuracy under W8A8 {parts[1]}"
    return f"`{metric}`"


def needle_modes(record: dict) -> str:
    """The needle study (an `eval.py compare` summary of scripts/needle_study.py's kept runs): a sentence per compared
    metric, what the seeds can resolve, the table and paired effects, then the per_tensor drop of every run by arm and
    seed."""
    lines = [
        study(record, [(m, needle_noun(m)) for m in record["metrics"]]),
        "The retrieval onset is the first checkpoint step at single-needle accuracy >= 0.5 (a run that never gets "
        "there counts one checkpoint interval past its last); it and the needle accuracies, drops and perplexities are "
        "one value per run, logged at its final checkpoint (the onset read off the run's curve, the others measured "
        "there), so a run's late window is that value (scripts/needle_study.py).",
        "",
    ]
    if NEEDLE_DROP in record["metrics"]:
        late = {arm: a["late"][NEEDLE_DROP] for arm, a in record["arms"].items()}
        seeds = sorted(
            {s for by_seed in late.values() for s in by_seed},
            key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s),
        )
        lines += [
            f"The per_tensor drop (`{NEEDLE_DROP}`: single-needle accuracy at 128 tokens in full precision minus "
            "under W8A8 per_tensor, at the final checkpoint), by arm and seed:",
            "",
            "| arm | " + " | ".join(f"seed {s}" for s in seeds) + " | median (range) |",
            "|" + " --- |" * (len(seeds) + 2),
        ]
        lines += [
            f"| {arm} | "
            + " | ".join(f"{by_seed[s]:+.3f}" if s in by_seed else "-" for s in seeds)
            + f" | {median_cell(list(by_seed.values()))} |"
            for arm, by_seed in late.items()
        ]
        lines.append("")
    return "\n".join(lines)


def paper(record: dict) -> str:
    """The paper's 0.3B table beside a study's, quantity by quantity: each V-scale arm's direction against the baseline
    in the paper (the sign of its change) and in the study (an established direction after correction, else none)."""
    arms = [a for a in ("learned", "backward") if a in record["effects"]]
    lines = [
        f"| quantity | paper: baseline / V-scale / backward | here: {record['baseline']} median (range) | "
        + " | ".join(f"here: {a}'s effect (95% CI)" for a in arms)
        + " | "
        + " | ".join(f"{a}: paper, here, agree" for a in arms)
        + " |",
        "|" + " --- |" * (3 + 2 * len(arms)),
    ]
    for noun, metric, values in PAPER_03B:
        if not all(metric in record["effects"][a] for a in arms):
            continue
        cells = [median_cell(list(record["arms"][record["baseline"]]["late"][metric].values()))]
        verdicts = []
        for i, arm in enumerate(arms, start=1):
            e = stats.Effect(**record["effects"][arm][metric])
            cells.append(f"{e.estimate:.3g} ({e.bounds})")
            said = None if values[i] is None else "lower" if values[i] < values[0] else "higher"
            here = e.verdict if e.established else f"none ({'lower' if e.estimate < e.null else 'higher'} by estimate)"
            verdicts.append(
                f"{said or '-'}, {here}, "
                + ("-" if said is None or e.verdict == "none" else "yes" if said == e.verdict else "no")
            )
        shown = " / ".join("-" if v is None else f"{v:g}" for v in values)
        lines.append(f"| {noun} (`{metric}`) | {shown} | " + " | ".join(cells) + " | " + " | ".join(verdicts) + " |")
    return "\n".join(
        [
            *lines,
            "",
            f"(Here: {record['baseline']}'s median over its seeds, then each arm's paired effect against it — a ratio, "
            "or a difference for losses and rates — with its interval; a direction is stated only when established "
            f"after {record['correction']['method']}. The paper's are single runs.)",
            "",
        ]
    )


def peak_sweep(record: dict) -> str:
    """The sweep of scripts/peak_sweep.py: per variant, its runs' residual peak (median over seeds, with the range and
    the layers it sat in), the seeds reaching 10x, the other faces of the sink, and the steps its fitted power law
    predicts."""
    lines = [
        "| variant | seeds | residual peak, token 0 / early (layer) | seeds >= 10x | token-0 norm | sink alpha "
        "| R_GS max | val loss | growth exponent k (ratio ~ step^k) | steps to 10x / 100x (fit) "
        "| peak / the base's, same seeds |",
        "|" + " --- |" * 11,
    ]
    for name, v in record["variants"].items():
        runs = list(v["runs"].values())
        layers = ", ".join(str(x) for x in sorted({r["layer"] for r in runs}))
        reach = " / ".join(
            _median([r["growth"]["steps_to"][str(t)] for r in runs], "{:.0f}") for t in record["targets"]
        )
        lines.append(
            f"| {name} (`{' '.join(v['overrides']) or 'configs/bb-peak.yaml'}`) "
            f"| {len(runs)} | {median_cell([r['peak'] for r in runs])} ({layers}) "
            f"| {sum(r['peak'] >= 10 for r in runs)}/{len(runs)} | "
            f"{median_cell([r['act/h_out_t0/max'] for r in runs])} "
            f"| {median_cell([r['sink/alpha/max'] for r in runs])} "
            f"| {median_cell([r['gsink/ratio/max'] for r in runs])} "
            f"| {median_cell([r['val/loss'] for r in runs])} | "
            f"{median_cell([r['growth']['exponent'] for r in runs])} | {reach} | {_against_base(v)} |"
        )
    return "\n".join(
        [
            *lines,
            "",
            f"(Late window: the median over the last {record['window']:.0%} of each run's logged steps; a cell is the "
            "median over seeds with the range; the fit is a power law through the peak layer's logged ratios, its "
            "steps the median over seeds, '-' where it does not rise; the last column is the variant's peak over the "
            "base's at the seeds both ran, their geometric mean ratio (95% CI), the seeds where it is higher, and the "
            "Wilcoxon p adjusted over the variants (Benjamini-Hochberg), '-' with fewer than two shared seeds.)",
            "",
        ]
    )


def _against_base(variant: dict) -> str:
    """A sweep variant's peak against the base config's, paired by seed (peak_sweep.against_base)."""
    if "against_base" not in variant:
        return "-"
    e = stats.Effect(**variant["against_base"])
    up = sum(v > 1 for v in e.per_seed.values())
    return f"{e.estimate:.3g} ({e.bounds}); {up}/{e.n} higher; p {e.p_adjusted:.2g}"


def _median(values: list, form: str) -> str:
    """The median of the values a fit predicted ('-' where most predicted none; past 10^9 steps, said so)."""
    known = sorted(v for v in values if v is not None)
    if len(known) < len(values) / 2 or not known:
        return "-"
    middle = known[len(known) // 2]
    return form.format(middle) if middle < 1e9 else "> 1e9"


def peak_layers(kept: Path) -> str:
    """Per baseline run kept by scripts/keep_runs.py (late window): the block whose MLP writes most at token 0, and
    after it the token-0 norm, the early tokens' norm and their ratio; then the largest ratio of any layer."""
    lines = [
        "| run | block writing most at token 0 (`act/r_mlp_t0`) | token-0 norm after it | early tokens' norm after it "
        "| ratio after it | largest ratio (layer) |",
        "|" + " --- |" * 6,
    ]
    for run in sorted(kept.glob("off-seed*"), key=lambda r: int(r.name.removeprefix("off-seed"))):
        series = read_metrics(run)
        at = {q: late.layer_medians(series, q) for q in ("act/r_mlp_t0", "act/h_out_t0", "act/h_out_ratio")}
        block, top = (
            max(at["act/r_mlp_t0"], key=at["act/r_mlp_t0"].get),
            max(at["act/h_out_ratio"], key=at["act/h_out_ratio"].get),
        )
        t0, ratio = at["act/h_out_t0"][block], at["act/h_out_ratio"][block]
        lines.append(
            f"| {run.name} | {block} | {t0:.0f} | {t0 / ratio:.0f} | "
            f"{ratio:.2f} | {at['act/h_out_ratio'][top]:.2f} ({top}) |"
        )
    return "\n".join(
        [
            *lines,
            "",
            "(Late-window medians of the per-layer `act/r_mlp_t0`, `act/h_out_t0` and `act/h_out_ratio`; the early "
            "tokens' norm is the quotient of the last two.)",
            "",
        ]
    )


RENDER = {
    "bb-sweep": sweep,
    "needle-tiny": needle,
    "bb-peak": partial(study, faces=PEAK_HEADLINES),
    "bb-peak-paper": paper,
    "bb-peak-headlines": partial(headlines, faces=PEAK_HEADLINES),
    "bb-peak-sweep": peak_sweep,
    "needle-modes": needle_modes,
}
RESULT = {"bb-peak-paper": "bb-peak", "bb-peak-headlines": "bb-peak"}
"""A block rendered from another block's result file."""
KEPT = {"bb-peak-layers": "bb-peak-runs"}
"""A block rendered from the runs scripts/keep_runs.py kept in docs/results/<dir>."""


def render(name: str) -> str:
    if name in KEPT:
        return peak_layers(ROOT / "docs" / "results" / KEPT[name])
    record = json.loads((ROOT / "docs" / "results" / f"{RESULT.get(name, name)}.json").read_text())
    return RENDER.get(name, study)(record)


def regenerate(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + render(m.group("name")) + "\n" + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a block differs from its result file"
    )
    p.add_argument(
        "--upgrade",
        action="store_true",
        help="first rewrite each eval.py compare summary in docs/results from its late values",
    )
    args = p.parse_args(argv)
    if args.upgrade and not args.check:
        for path in sorted((ROOT / "docs" / "results").glob("*.json")):
            upgrade(path)
    stale = []
    for doc in DOCS:
        path = ROOT / doc
        text = path.read_text()
        new = regenerate(text)
        if new != text:
            stale.append(doc)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print(
            f"generated blocks differ from docs/results in {', '.join(stale)}: run python scripts/study_tables.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
