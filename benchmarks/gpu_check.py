"""One command that proves the GPU paths when a GPU is lent for minutes: the CUDA tests, step-time ratios of every
V-scale mode, diagnostics interval and attention arm against the baseline in one process, tokens/s, MFU and peak
memory, and a 2-process FSDP run. Writes gpu_check.json and gpu_check.md into --out (BENCHMARKS.md, "GPU check").

    python benchmarks/gpu_check.py --out gpu-check                       # on an H100/H200: paper-0.1b, under 8 minutes
    python benchmarks/gpu_check.py --device cpu --out /tmp/gpu-check      # the same on a tiny model, about a minute (a test)

No network: the batches are random token ids of the config's vocabulary and length.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from vscale.model import ARMS, MODES, apply_interventions, build_config, build_model
from vscale.train.callbacks.throughput import flops_per_micro_batch
from vscale.train.optim import build_optimizer
from vscale.train.peaks import device_peak

sys.path.insert(0, str(Path(__file__).parent))
from step_time import time_round_robin  # noqa: E402  (the round-robin timing of benchmarks/step_time.py)

REPO = Path(__file__).resolve().parents[1]


def variants() -> dict[str, tuple[str, str, int, bool]]:
    """name -> (V-scale mode, attention arm, diagnostics interval, guard); the first is the baseline, the second its A/A control."""
    out = {"off": ("off", "softmax", 0, False), "A/A control": ("off", "softmax", 0, False)}
    out |= {m: (m, "softmax", 0, False) for m in MODES if m != "off"}
    out |= {"diagnostics every 10": ("off", "softmax", 10, False), "diagnostics every step": ("off", "softmax", 1, False)}
    return out | {arm: ("off", arm, 0, False) for arm in ARMS if arm != "softmax"}


def step_times(config: dict, device: str, steps: int, batch_size: int, bf16: bool) -> dict:
    model_config, seq_len = config["model"]["model_config"], config["data"]["seq_len"]
    batch = torch.randint(0, model_config["vocab_size"], (batch_size, seq_len), device=device)
    runs = {}
    for name, (mode, arm, every, guard) in variants().items():
        torch.manual_seed(0)
        model = apply_interventions(build_model(build_config(model_config, None), None), mode, arm).to(device)
        runs[name] = (model, build_optimizer(model, 1e-4, 1e-5, 10, 1000, 0.1, (0.9, 0.95), 1e-8)[0], every, guard, [], [])
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    time_round_robin(runs, batch, warmup=3, steps=steps, bf16=bf16)
    base = statistics.median(runs["off"][4])
    flops = flops_per_micro_batch(runs["off"][0], batch_size, seq_len)
    peak = device_peak(torch.cuda.get_device_name() if device == "cuda" else "", torch.bfloat16 if bf16 else torch.float32)
    table = {name: {"median_ms": 1e3 * statistics.median(r[4]), "ratio": statistics.median(r[4]) / base} for name, r in runs.items()}
    tokens_per_sec = batch.numel() / base
    return {"batch": list(batch.shape), "steps": steps, "bf16": bf16, "variants": table, "tokens_per_sec": tokens_per_sec,
            "flops_per_step": flops, "mfu": flops / base / peak if peak else None,
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None}


def cuda_tests(device: str) -> dict:
    """tests/test_gpu.py (the `gpu` marker); skipped, and said so, without CUDA."""
    result = subprocess.run([sys.executable, "-m", "pytest", "tests/test_gpu.py", "-m", "gpu", "-p", "no:xdist", "-o", "addopts=", "-q", "-rs"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    return {"returncode": result.returncode, "summary": (result.stdout.strip().splitlines() or [""])[-1], "cuda": device == "cuda"}


def fsdp_run(device: str, out: Path) -> dict:
    """Two processes of train.py under FSDP on the one GPU, if NCCL allows it (it refuses two ranks on one device on most systems)."""
    if device != "cuda":
        return {"ran": False, "why": "--device cpu: the FSDP check needs CUDA (the CPU FSDP path is tests/test_fsdp.py, gloo)"}
    command = [sys.executable, "train.py", "fit", "--config", "configs/tiny.yaml", f"--run.root={out / 'fsdp'}", "--trainer.strategy=fsdp",
               "--trainer.devices=2", "--trainer.accelerator=gpu", "--trainer.max_steps=5", "--run.val_every_n_steps=1000",
               "--trainer.enable_progress_bar=false", "--run.cpu_capability=null", "--data.global_batch=null"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    last = (result.stderr.strip().splitlines() or [""])[-1]
    return {"ran": True, "ok": result.returncode == 0, "last_line": last}


def fsdp_line(fsdp: dict) -> str:
    if not fsdp["ran"]:
        return f"not run ({fsdp['why']})"
    return "ok" if fsdp["ok"] else f"failed: {fsdp['last_line']}"


def markdown(report: dict) -> str:
    s = report["step_time"]
    lines = [f"# GPU check: {report['device_name']}", "", f"torch {report['torch']}, {report['config']}, batch {s['batch']}, "
             f"{s['steps']} timed steps per variant, bf16 {s['bf16']}", "", "| variant | median ms/step | ratio to off |", "| --- | --- | --- |"]
    lines += [f"| {name} | {v['median_ms']:.1f} | {v['ratio']:.3f} |" for name, v in s["variants"].items()]
    mfu = "n/a (no peak known for this device)" if s["mfu"] is None else f"{s['mfu']:.3f}"
    memory = "n/a" if s["peak_memory_gib"] is None else f"{s['peak_memory_gib']:.1f} GiB"
    lines += ["", f"tokens/s (off): {s['tokens_per_sec']:.0f}; MFU (off): {mfu}; peak memory: {memory}", "",
              f"CUDA tests: {report['cuda_tests']['summary']}", "",
              f"FSDP, 2 processes on one GPU: {fsdp_line(report['fsdp'])}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--config", help="train.py config whose model is timed (default: paper-0.1b on cuda, tiny on cpu)")
    p.add_argument("--steps", type=int, help="timed steps per variant (default 20 on cuda, 3 on cpu)")
    p.add_argument("--batch_size", type=int, help="rows per step (default: the config's data.batch_size on cuda, 4 on cpu)")
    args = p.parse_args(argv)
    cuda = args.device == "cuda"
    config_path = args.config or ("configs/paper-0.1b.yaml" if cuda else "configs/tiny.yaml")
    config = yaml.safe_load((REPO / config_path).read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    report = {"device": args.device, "device_name": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__, "config": config_path,
              "cuda_tests": cuda_tests(args.device),
              "step_time": step_times(config, args.device, args.steps or (20 if cuda else 3), args.batch_size or (config["data"]["batch_size"] if cuda else 4), cuda),
              "fsdp": fsdp_run(args.device, args.out)}
    report["seconds"] = time.monotonic() - started
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    (args.out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
