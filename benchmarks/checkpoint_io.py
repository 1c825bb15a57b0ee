"""Checkpoint write time: vscale's AtomicCheckpointIO (temporary file beside the target, fsync,
rename) against Lightning's TorchCheckpointIO, as a ratio measured in the same run.

    python benchmarks/checkpoint_io.py --config configs/paper-0.1b.yaml --dir /path/on/the/checkpoint/filesystem

The checkpoint holds the config's model weights and two AdamW moments (fp32), like a training
checkpoint. Writers alternate, so drift hits both alike; the A/A control repeats Lightning's.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml
from lightning.pytorch.plugins.io import TorchCheckpointIO

from vscale.model import build_config, build_model
from vscale.train.checkpoint import AtomicCheckpointIO


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tiny.yaml")
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary directory)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    model_config = yaml.safe_load(Path(args.config).read_text())["model"]["model_config"]
    weights = build_model(build_config(model_config, None), None, "sdpa").state_dict()
    checkpoint = {
        "state_dict": weights,
        "exp_avg": {k: torch.zeros_like(v) for k, v in weights.items()},
        "exp_avg_sq": {k: torch.zeros_like(v) for k, v in weights.items()},
    }
    writers = {"lightning": TorchCheckpointIO(), "A/A control": TorchCheckpointIO(), "atomic": AtomicCheckpointIO()}
    times = {name: [] for name in writers}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "last.ckpt"
        for _ in range(args.repeats):
            for name, writer in writers.items():
                start = time.perf_counter()
                writer.save_checkpoint(checkpoint, path)
                times[name].append(time.perf_counter() - start)
        size = path.stat().st_size / 2**20
    base = statistics.median(times["lightning"])
    print(f"{args.config}: {size:.0f} MiB per checkpoint, {args.repeats} writes each")
    print("| writer | median s/write | ratio |\n| --- | --- | --- |")
    for name, t in times.items():
        print(f"| {name} | {statistics.median(t):.3f} | {statistics.median(t) / base:.3f} |")


if __name__ == "__main__":
    main()
