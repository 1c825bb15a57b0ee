"""Process memory over a training run, with diagnostics every N steps and without.

    python benchmarks/memory.py --steps 1000 --every 10

Each variant trains configs/tiny.yaml through train.py's CLI in a fresh process (so one variant's
heap does not carry into the other) and samples the resident set size after every
`--sample` optimizer steps. Printed: RSS at a few steps and the growth per 100 steps after the
first 100 (a least-squares slope), which is ~0 when nothing accumulates.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import lightning as L
import yaml

REPO = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


class RSSSampler(L.Callback):
    def __init__(self, every: int):
        self.every, self.samples = every, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step % self.every == 0:
            self.samples.append((trainer.global_step, rss_mib()))


def child(steps: int, every: int, sample: int, root: str) -> None:
    sys.path.insert(0, str(REPO))
    from vscale.train.cli import VScaleCLI

    config = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    config["trainer"]["callbacks"][0]["init_args"]["every_n_steps"] = every
    path = Path(root) / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = VScaleCLI(
        args=[
            "--config",
            str(path),
            f"--run.root={root}",
            f"--trainer.max_steps={steps}",
            "--trainer.enable_progress_bar=false",
            f"--run.val_every_n_steps={steps}",
            f"--run.ckpt_every={steps}",
        ],
        run=False,
    )
    sampler = RSSSampler(sample)
    cli.trainer.callbacks.append(sampler)
    cli.before_fit()
    cli.trainer.fit(cli.model, cli.datamodule)
    print("SAMPLES " + json.dumps(sampler.samples), flush=True)


def slope_per_100(samples: list[tuple[int, float]]) -> float:
    xs, ys = zip(*[(s, m) for s, m in samples if s >= 100])
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return 100 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--every", type=int, default=10, help="diagnostics interval of the measured variant")
    p.add_argument("--sample", type=int, default=50, help="sample RSS every this many steps")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        with tempfile.TemporaryDirectory() as root:
            return child(args.steps, args.child, args.sample, root)
    rows = {}
    for label, every in ((f"diagnostics every {args.every} steps", args.every), ("no diagnostics", 0)):
        out = subprocess.run(
            [sys.executable, __file__, "--steps", str(args.steps), "--sample", str(args.sample), "--child", str(every)],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        ).stdout
        rows[label] = json.loads(out.split("SAMPLES ", 1)[1])
    marks = [m for m in (100, 250, 500, 750, args.steps) if m <= args.steps]
    print(
        "| variant | "
        + " | ".join(f"RSS MiB @ step {m}" for m in marks)
        + " | growth MiB / 100 steps (after step 100) |"
    )
    print("| --- |" + " --- |" * (len(marks) + 1))
    for label, samples in rows.items():
        at = dict(samples)
        cells = [f"{at[max(s for s in at if s <= m)]:.0f}" for m in marks]
        print(f"| {label} | " + " | ".join(cells) + f" | {slope_per_100(samples):+.2f} |")


if __name__ == "__main__":
    main()
