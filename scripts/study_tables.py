"""The README's and docs/bb.md's study tables and claims, generated from the committed result files, so that no
number in the prose can differ from the runs it reports (tests/test_study_tables.py fails when one does).

    python scripts/study_tables.py             # rewrite every generated block
    python scripts/study_tables.py --check     # exit 1 naming the blocks that differ from their files
    python scripts/study_tables.py --upgrade   # first rebuild each study's comparisons from its late values

A block sits between `<!-- generated: NAME -->` and `<!-- end generated: NAME -->`; NAME's result file is
`docs/results/NAME.json` (an `eval.py compare` summary.json, the sweep summary of scripts/bb_sweep.py, or an `eval.py run`
results.json).
"""

import argparse
import json
import re
import sys
from pathlib import Path

from vscale.eval.compare import analysis, headline, seeds_needed, summary_lines
from vscale.eval.needle import KINDS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/bb.md")
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated: (?P=name) -->)", re.S)
HEADLINES = (("gsink/ratio/max", "the gradient sink"), ("sink/alpha/max", "the attention sink"), ("act/v_ratio/min", "the value drain"),
             ("val/loss", "the validation loss"))


def study(record: dict) -> str:
    """An `eval.py compare` summary: one sentence per face of the sink, what its seeds can resolve, then the table and
    the paired effects."""
    faces = [(metric, noun) for metric, noun in HEADLINES if any(metric in by_metric for by_metric in record["effects"].values())]
    return "\n".join([*(f"**{headline(record, *face)}**" for face in faces), "", " ".join(seeds_needed(record, *face) for face in faces), "",
                      *summary_lines(record)])


def upgrade(path: Path) -> None:
    """Rewrite a committed `eval.py compare` summary.json with the comparisons `eval.py compare` now makes (pairwise,
    adjusted p, halves), rebuilt from its late values: no run is needed."""
    record = json.loads(path.read_text())
    if "arms" in record and "late" in next(iter(record["arms"].values())):
        path.write_text(json.dumps(record | analysis(record), indent=1))


def sweep(record: dict) -> str:
    """The sweep of scripts/bb_sweep.py: per variant, the seeds that grow a sink under each dispatch, and those that flip."""
    dispatches = record["dispatches"]
    lines = ["| variant | " + " | ".join(f"seeds with a sink ({d})" for d in dispatches) + " | outcome differs between dispatches |",
             "|" + " --- |" * (len(dispatches) + 2)]
    for name, v in record["variants"].items():
        grows = [f"{len(v['grows_sink'][d])}/{len(v['late_alpha_max'][d])}" for d in dispatches]
        flips = ", ".join(f"seed {s}" for s in v["flips"]) or "none"
        lines.append(f"| {name} (`{' '.join(v['overrides'])}`) | " + " | ".join(grows) + f" | {flips} |")
    return "\n".join([*lines, "", f"(A seed grows a sink when the late-window median of `sink/alpha/max` over the last {record['window']:.0%} "
                      f"of its logged steps exceeds eps = {record['eps']}; unpinned runs, `--run.cpu_capability=null`.)", ""])


def needle(record: dict) -> str:
    """An `eval.py run` results.json: per checkpoint, perplexity and each needle kind's accuracy at each
    length, in full precision and under each W8A8 mode (mean ± population std over the needle seeds)."""
    ev = record["eval"]
    precisions = ["full", *ev["quant"]]
    lines = ["| checkpoint | measurement | " + " | ".join(["full precision", *(f"W8A8 {m}" for m in ev["quant"])]) + " |",
             "|" + " --- |" * (len(precisions) + 2)]
    for label, c in record["checkpoints"].items():
        r = c["results"]
        ppl = [r["perplexity"]["ppl"], *(r["w8a8"][f"w8a8_{m}"]["ppl"] for m in ev["quant"])]
        lines.append(f"| {label} | perplexity | " + " | ".join(f"{x:.1f}" for x in ppl) + " |")
        for kind in KINDS:
            for length in ev["needle_context_lens"]:
                cells = [r["needle"][p][kind][str(length)] for p in precisions]
                lines.append(f"| {label} | {kind} @{length} | " + " | ".join(f"{x['mean']:.2f} ± {x['std']:.2f}" for x in cells) + " |")
    return "\n".join([*lines, "", f"(Needle accuracy: {len(ev['needle_seeds'])} seeds x {ev['needle_n']} cases per kind and length, greedy "
                                  "decoding, exact match; lengths past the trained one are extrapolation.)", ""])


RENDER = {"bb-sweep": sweep, "needle-tiny": needle}


def render(name: str) -> str:
    record = json.loads((ROOT / "docs" / "results" / f"{name}.json").read_text())
    return RENDER.get(name, study)(record)


def regenerate(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + render(m.group("name")) + "\n" + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block differs from its result file")
    p.add_argument("--upgrade", action="store_true", help="first rewrite each eval.py compare summary in docs/results from its late values")
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
        print(f"generated blocks differ from docs/results in {', '.join(stale)}: run python scripts/study_tables.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
