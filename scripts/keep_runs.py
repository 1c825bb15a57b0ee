"""Keep what a study compares of each finished run, small enough to commit, so that a study spanning sessions (or
machines) never retrains a run it has: the metrics.csv columns of the quantities `eval.py compare` reads, and late.json.

    python scripts/keep_runs.py runs/bb-peak --out docs/results/bb-peak-runs
    python eval.py compare --run docs/results/bb-peak-runs --baseline off ...
    python scripts/keep_runs.py runs/bb --out docs/results/bb-arms-runs --match "*-off-seed*"

A run is kept once it has finished (train.py writes late.json at fit end); a kept run is not copied again. The copy
is a run directory of its own (`<out>/<run name>/metrics.csv`), so `eval.py compare` reads it as it reads runs/.
"""

import argparse
import csv
import shutil
from fnmatch import fnmatch
from pathlib import Path

QUANTITIES = (
    "step",
    "train/loss",
    "val/",
    "sink/alpha/",
    "sink/rate/",
    "sink/extra_mass/",
    "gsink/ratio/",
    "act/h_out_ratio/",
    "act/h_ratio/",
    "act/h_out_t0/",
    "act/r_mlp_t0/",
    "act/v_ratio/",
    "vscale/lambda",
)
"""Column prefixes kept: the curves, profile and late-window metrics of the studies (README, docs/bb-peak.md)."""


def keep(run_dir: Path, out: Path) -> bool:
    """Copy one finished run's kept columns and late.json into out/<run name>; False if unfinished or kept already."""
    target = out / run_dir.name
    if not (run_dir / "late.json").is_file() or (target / "late.json").is_file():
        return False
    with open(run_dir / "metrics.csv", newline="") as f:
        reader = csv.DictReader(f)
        columns = [c for c in reader.fieldnames or [] if c.startswith(QUANTITIES)]
        rows = [{c: row[c] for c in columns} for row in reader]
    target.mkdir(parents=True, exist_ok=True)
    with open(target / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(r for r in rows if any(r[c] for c in columns if c != "step"))
    shutil.copy(run_dir / "late.json", target / "late.json")
    return True


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", type=Path, help="an experiment directory of train.py runs (runs/<experiment>)")
    p.add_argument("--out", type=Path, required=True, help="where the kept runs go (docs/results/<study>-runs)")
    p.add_argument(
        "--match",
        nargs="+",
        default=["*"],
        help="keep only the runs whose name matches one of these patterns (one study of an experiment that holds "
        "several: `off-seed*`, `*-off-seed*`; default: every run)",
    )
    args = p.parse_args(argv)
    runs = [r for r in sorted(args.experiment.iterdir()) if r.is_dir() and any(fnmatch(r.name, m) for m in args.match)]
    kept = [r.name for r in runs if keep(r, args.out)]
    print(f"kept {len(kept)} run(s) in {args.out}: {', '.join(kept) or 'none new'}")


if __name__ == "__main__":
    main()
