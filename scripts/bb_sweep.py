"""The sweep that chose configs/bb.yaml's learning rate, warm-up and length (docs/bb.md, "Choosing the default").

Every variant trains the baseline (V-scale off) for 10 seeds, unpinned (`--run.cpu_capability=null`), once under
each ATen dispatch given, two processes of one thread at a time:

    python scripts/bb_sweep.py --out runs/bb-sweep --dispatch avx2 default
    python scripts/bb_sweep.py --out runs/bb-sweep --summary docs/results/bb-sweep.json   # after the runs

A seed grows a sink when the late-window value (`eval.py compare --window`, default the last quarter of the logged
steps) of sink/alpha/max exceeds eps = 0.3; the summary counts such seeds per variant and dispatch, and the seeds
whose outcome differs between dispatches.
"""

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

VARIANTS = {  # name -> train.py overrides (min_lr is lr / 10, as in configs/bb.yaml)
    "lr2e-2-w20-400": ["--model.lr=2e-2", "--model.min_lr=2e-3", "--model.warmup_steps=20", "--trainer.max_steps=400"],
    "lr1e-2-w20-400": ["--model.lr=1e-2", "--model.min_lr=1e-3", "--model.warmup_steps=20", "--trainer.max_steps=400"],
    "lr1e-2-w20-800": ["--model.lr=1e-2", "--model.min_lr=1e-3", "--model.warmup_steps=20", "--trainer.max_steps=800"],
    "lr5e-3-w50-800": [
        "--model.lr=5e-3",
        "--model.min_lr=5e-4",
        "--model.warmup_steps=50",
        "--trainer.max_steps=800",
    ],  # seed 0 only: no sink in either dispatch
}
SEEDS = range(10)
EPS = 0.3


def run(out: Path, variant: str, dispatch: str, seed: int) -> None:
    run_dir = out / f"{variant}-{dispatch}" / f"off-seed{seed}"
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": dispatch}
    command = [
        sys.executable,
        "train.py",
        "fit",
        "--config",
        "configs/bb.yaml",
        f"--run.root={out}",
        f"--run.experiment={variant}-{dispatch}",
        f"--seed_everything={seed}",
        "--run.cpu_capability=null",
        "--run.ckpt_every=100000",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        *VARIANTS[variant],
    ]
    subprocess.run(command, env=env, check=True, capture_output=True)
    print(f"done {run_dir}", flush=True)


def summary(out: Path, dispatches: list[str]) -> dict:
    from vscale.runs import late, read_metrics

    table = {}
    for variant in VARIANTS:
        outcome = {}
        for dispatch in dispatches:
            values = {}
            for seed in SEEDS:
                path = out / f"{variant}-{dispatch}" / f"off-seed{seed}"
                if (path / "metrics.csv").is_file():
                    values[seed] = late.late_value(read_metrics(path), "sink/alpha/max")
            outcome[dispatch] = values
        grows = {d: sorted(s for s, v in vals.items() if v is not None and v > EPS) for d, vals in outcome.items()}
        both = set.intersection(*(set(v) for v in outcome.values())) if outcome else set()
        flips = sorted(s for s in both if len({outcome[d][s] > EPS for d in dispatches}) > 1)
        table[variant] = {
            "overrides": VARIANTS[variant],
            "late_alpha_max": outcome,
            "grows_sink": grows,
            "seeds": len(both),
            "flips": flips,
        }
    return {"window": late.WINDOW, "eps": EPS, "dispatches": dispatches, "variants": table}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/bb-sweep"))
    p.add_argument("--dispatch", nargs="+", default=["avx2", "default"])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--summary", type=Path, help="write the summary JSON here instead of running")
    args = p.parse_args()
    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(summary(args.out, args.dispatch), indent=1))
        return
    jobs = [(args.out, v, d, s) for s in SEEDS for v in args.variants for d in args.dispatch]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda job: run(*job), jobs))


if __name__ == "__main__":
    main()
