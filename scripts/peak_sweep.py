"""The sweep behind configs/bb-peak.yaml (docs/bb-peak.md, "The sweep"): which levers grow a token-0 residual peak
(a massive activation) on the Bigram-Backcopy task, in the paper's model class.

Every variant trains the baseline (V-scale off) through train.py, pinned to AVX2 kernels as the config is, two processes
of one thread at a time, and each finished run is kept (scripts/keep_runs.py) in docs/results/bb-peak-sweep-runs, so
that a sweep spanning sessions never trains a kept run again. The base config's own row is the study's baseline runs
(docs/results/bb-peak-runs, README "The residual peak"):

    python scripts/peak_sweep.py --seeds 0
    python scripts/peak_sweep.py --summary docs/results/bb-peak-sweep.json   # every kept run

A run's peak is the largest over layers of each layer's late-window `act/h_out_ratio` (the token-0 norm of the
layer's output over the mean of tokens 1..15, SPEC §3); its growth curve is that layer's ratio at log-spaced logged
steps, and a power law fitted to all of them predicts the steps to 10x and 100x.
"""

import argparse
import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

BASE = "configs/bb-peak.yaml"
VARIANTS = {  # name -> train.py overrides of BASE; each moves one lever (back to configs/bb.yaml's value, or beyond)
    "bb-peak": [],
    "layers-3": ["--model.model_config.num_hidden_layers=3"],
    "silu": ["--model.model_config.hidden_act=silu"],
    "embed-0.02": ["--model.embedding_std=null"],
    "cosine": ["--model.min_lr=5e-4", "--model.warmup_steps=20"],
    "betas-0.95": ["--model.betas=[0.9, 0.95]"],
    "wd-1e-4": ["--model.weight_decay=1e-4"],
    "wd-1": ["--model.weight_decay=1.0"],
    "lr-1e-2": ["--model.lr=1e-2", "--model.min_lr=1e-2"],
    "lr-2e-3": ["--model.lr=2e-3", "--model.min_lr=2e-3"],
    "batch-128": ["--data.batch_size=128"],
    "d-128": ["--model.model_config.hidden_size=128", "--model.model_config.intermediate_size=512"],
    "triggers-1": ["--data.synthetic.triggers=1"],
    "rate-0.1": ["--data.synthetic.trigger_rate=0.1"],
    "no-bos": ["--data.synthetic.bos=false"],
    # the two levers closest at seed 0, together
    "cosine+wd-1e-4": ["--model.min_lr=5e-4", "--model.warmup_steps=20", "--model.weight_decay=1e-4"],
    # the growth fit tested three times past the base's 2000 steps (15 minutes on a core), with the base's weight
    # decay and with Guo et al.'s
    "steps-6000": ["--trainer.max_steps=6000"],
    "wd-1e-4+steps-6000": ["--model.weight_decay=1e-4", "--trainer.max_steps=6000"],
}
PEAK = "act/h_out_ratio"
OTHERS = ("act/h_ratio/max", "act/h_out_t0/max", "sink/alpha/max", "sink/rate/mean", "gsink/ratio/max", "val/loss")
TARGETS = (10, 100)


KEPT = Path("docs/results/bb-peak-sweep-runs")
STUDY = Path("docs/results/bb-peak-runs")
"""The study's kept runs: its baseline is the sweep's row for the base config itself."""


def run(out: Path, variant: str, seed: int) -> None:
    if (KEPT / variant / f"off-seed{seed}" / "late.json").is_file():
        return
    command = [
        sys.executable,
        "train.py",
        "fit",
        "--config",
        BASE,
        f"--run.root={out}",
        f"--run.experiment={variant}",
        f"--seed_everything={seed}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        *VARIANTS[variant],
    ]
    subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True, capture_output=True)
    subprocess.run(
        [sys.executable, "scripts/keep_runs.py", str(out / variant), "--out", str(KEPT / variant)], check=True
    )


def growth(points: list[tuple[int, float]]) -> dict:
    """Log-spaced points of one layer's ratio, and a power law `ratio = c * step^k` fitted to all its logged steps (a
    line in log-log; the ratio's run-to-run noise is too large for a line through its last half), with the steps it
    predicts for each target (None where the fit does not rise)."""
    points = sorted(points)
    steps = np.array([s for s, _ in points], dtype=float)
    values = np.array([v for _, v in points])
    marks = sorted({int(np.argmin(np.abs(steps - m))) for m in np.geomspace(max(steps[0], 1), steps[-1], 8)})
    k, log_c = np.polyfit(np.log(steps), np.log(values), 1)
    reach = {str(t): (max(0, round(math.exp((math.log(t) - log_c) / k))) if k > 0 else None) for t in TARGETS}
    return {
        "curve": [[int(steps[i]), float(values[i])] for i in marks],
        "exponent": float(k),
        "scale": float(math.exp(log_c)),
        "steps_to": reach,
    }


def run_summary(run_dir: Path) -> dict:
    from vscale.runs import late, read_metrics

    series = read_metrics(run_dir)
    per_layer = late.layer_medians(series, PEAK)
    layer = max(per_layer, key=per_layer.get)
    return {
        "peak": per_layer[layer],
        "layer": layer,
        "per_layer": per_layer,
        **{name: late.late_value(series, name) for name in OTHERS},
        "growth": growth(series[f"{PEAK}/layer_{layer}"]),
    }


def summary() -> dict:
    """Every kept run of every variant, the base config's from the study."""
    from vscale.runs import late

    table = {}
    for variant, overrides in VARIANTS.items():
        kept = sorted((STUDY if variant == "bb-peak" else KEPT / variant).glob("off-seed*/late.json"))
        runs = {path.parent.name.removeprefix("off-seed"): run_summary(path.parent) for path in kept}
        if runs:
            table[variant] = {"overrides": overrides, "runs": dict(sorted(runs.items(), key=lambda kv: int(kv[0])))}
    against_base(table)
    return {"base": BASE, "peak": PEAK, "window": late.WINDOW, "targets": list(TARGETS), "variants": table}


def against_base(table: dict) -> None:
    """Each variant's peak against the base config's at the seeds both ran (a ratio, paired by seed; `eval.py
    compare`'s statistics), its p adjusted over the variants compared (Benjamini-Hochberg): a lever is said to get
    further than the base only on this direct comparison, never from one seed."""
    from vscale.eval import stats

    def peaks(variant: str) -> dict[int, float]:
        return {int(seed): run["peak"] for seed, run in table[variant]["runs"].items()}

    compared = {v: stats.paired_effect(PEAK, peaks(v), peaks("bb-peak"), ratio=True) for v in table if v != "bb-peak"}
    compared = {v: e for v, e in compared.items() if e is not None}
    for v, e in zip(compared, stats.corrected(list(compared.values()))):
        table[v]["against_base"] = asdict(e)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/peak-sweep"))
    p.add_argument(
        "--variants",
        nargs="+",
        default=[v for v in VARIANTS if v != "bb-peak"],
        choices=[v for v in VARIANTS if v != "bb-peak"],
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--summary", type=Path, help="write the summary JSON of every kept run here instead of running")
    args = p.parse_args()
    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(summary(), indent=1))
        return
    jobs = [(args.out, v, s) for s in args.seeds for v in args.variants]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda job: run(*job), jobs))


if __name__ == "__main__":
    main()
