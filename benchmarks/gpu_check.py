"""One command for a GPU lent for minutes (README, "Benchmarks on GPU"), in five stages, each of which rewrites
gpu_check.json and gpu_check.md in --out as it finishes, so a failure or the time limit leaves the earlier ones:

1. smoke: every entry point's imports (the wheel set) and 5 optimizer steps of the timed model on the device;
2. cuda_tests: tests/test_gpu.py (the `gpu` marker);
3. step_time: every V-scale mode, diagnostics interval and attention arm as a ratio to `off` in one process, with
   tokens/s, MFU and peak memory of a hand-written loop;
4. train: `train.py fit` itself on the timed config (synthetic rows, diagnostics every 10), its logged tokens/s and
   MFU against the hand-written loop's: the framework's own overhead;
5. science: `train.py fit` on the residual-peak GPU config for `off` and `learned`, their late-window summaries
   and one figure (science.png).

    python benchmarks/gpu_check.py --out gpu-check                   # one H100/H200: paper-0.1b, under 9 minutes
    python benchmarks/gpu_check.py --device cpu --out /tmp/gpu-check  # every stage at tiny size (the suite runs it)

No network and no data files: batches are random token ids, training rows synthetic (Bigram-Backcopy).
"""

import argparse
import importlib
import importlib.metadata
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from vscale.eval.curves import training_curves
from vscale.model import ARMS, MODES, apply_interventions, build_config, build_model
from vscale.runs import read_metrics
from vscale.runs.late import late_median
from vscale.train.callbacks.throughput import flops_per_micro_batch
from vscale.train.optim import build_optimizer
from vscale.train.peaks import device_peak

sys.path.insert(0, str(Path(__file__).parent))
from step_time import time_round_robin  # noqa: E402  (the round-robin timing of benchmarks/step_time.py)

REPO = Path(__file__).resolve().parents[1]
ENTRY_IMPORTS = ("vscale.train.cli", "vscale.eval.cli", "datasets", "jsonargparse", "wandb")
VERSIONS = (
    "torch",
    "transformers",
    "lightning",
    "torchmetrics",
    "tokenizers",
    "huggingface_hub",
    "numpy",
    "datasets",
    "jsonargparse",
    "wandb",
    "pydantic",
)
SCIENCE = (
    "act/h_out_ratio/layer_0",
    "act/h_out_ratio/max",
    "sink/alpha/max",
    "sink/rate/mean",
    "gsink/ratio/max",
    "train/loss",
    "val/loss",
)
"""What the science leg reports and draws: block 0's token-0 residual ratio (the peak of issue 28), sinks, R_GS,
loss."""


def variants() -> dict[str, tuple[str, str, int, bool]]:
    """name -> (V-scale mode, attention arm, diagnostics interval, guard); the first is the baseline, the second its A/A
    control."""
    out = {"off": ("off", "softmax", 0, False), "A/A control": ("off", "softmax", 0, False)}
    out |= {m: (m, "softmax", 0, False) for m in MODES if m != "off"}
    out |= {
        "diagnostics every 10": ("off", "softmax", 10, False),
        "diagnostics every step": ("off", "softmax", 1, False),
    }
    return out | {arm: ("off", arm, 0, False) for arm in ARMS if arm != "softmax"}


def new_model(model_config: dict, device: str, mode: str = "off", arm: str = "softmax"):
    torch.manual_seed(0)
    model = apply_interventions(build_model(build_config(model_config, None), None), mode, arm).to(device)
    return model, build_optimizer(model, 1e-4, 1e-5, 10, 1000, 0.1, (0.9, 0.95), 1e-8)[0]


def smoke(a, report: dict) -> dict:
    """The modules train.py, eval.py and this check import at start-up (what the wheels bring), and 5 steps."""
    for name in ENTRY_IMPORTS:
        importlib.import_module(name)
    model, opt = new_model(a.config["model"]["model_config"], a.device)
    batch = torch.randint(0, model.config.vocab_size, (a.batch_size, a.config["data"]["seq_len"]), device=a.device)
    losses = []
    for _ in range(5):
        with torch.autocast(a.device, dtype=torch.bfloat16, enabled=a.cuda):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return {
        "ok": all(map(math.isfinite, losses)),
        "losses": losses,
        "versions": {p: importlib.metadata.version(p) for p in VERSIONS},
    }


def cuda_tests(a, report: dict) -> dict:
    """tests/test_gpu.py (the `gpu` marker); skipped, and said so, without CUDA."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/test_gpu.py",
            "-m",
            "gpu",
            "-p",
            "no:xdist",
            "-o",
            "addopts=",
            "-q",
            "-rs",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=max(1, min(150, a.left())),
    )
    return {"ok": result.returncode == 0, "summary": (result.stdout.strip().splitlines() or [""])[-1], "cuda": a.cuda}


def step_time(a, report: dict) -> dict:
    model_config, seq_len = a.config["model"]["model_config"], a.config["data"]["seq_len"]
    batch = torch.randint(0, model_config["vocab_size"], (a.batch_size, seq_len), device=a.device)
    runs = {
        name: (*new_model(model_config, a.device, mode, arm), every, guard, [], [])
        for name, (mode, arm, every, guard) in variants().items()
    }
    if a.cuda:
        torch.cuda.reset_peak_memory_stats()
    time_round_robin(
        runs, batch, warmup=3 if a.cuda else 1, steps=a.steps, bf16=a.cuda
    )  # CPU: the code path, not a timing
    base = statistics.median(runs["off"][4])
    flops = flops_per_micro_batch(runs["off"][0], a.batch_size, seq_len)
    peak = device_peak(torch.cuda.get_device_name() if a.cuda else "", torch.bfloat16 if a.cuda else torch.float32)
    table = {
        name: {"median_ms": 1e3 * statistics.median(r[4]), "ratio": statistics.median(r[4]) / base}
        for name, r in runs.items()
    }
    return {
        "ok": True,
        "batch": list(batch.shape),
        "steps": a.steps,
        "bf16": a.cuda,
        "variants": table,
        "tokens_per_sec": batch.numel() / base,
        "flops_per_step": flops,
        "mfu": flops / base / peak if peak else None,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if a.cuda else None,
    }


def fit(a, config: str, name: str, cap_s: float, extra: list[str]) -> tuple[dict, Path]:
    """One `train.py fit` run into the scratch directory (never --out: checkpoints stay behind), stopped by
    Lightning at `cap_s` or what the budget leaves, whichever is first, so it ends cleanly and writes late.json."""
    seconds = int(max(1, min(cap_s, a.left() - 15)))
    command = [
        sys.executable,
        "train.py",
        "fit",
        "--config",
        config,
        f"--run.root={a.work}",
        "--run.experiment=gpu-check",
        f"--run.name={name}",
        "--run.wandb=false",
        "--run.cpu_capability=null",
        "--run.ckpt_every=1000000",
        "--trainer.enable_progress_bar=false",
        f"--trainer.accelerator={'gpu' if a.cuda else 'cpu'}",
        "--trainer.devices=1",
        f"--trainer.precision={'bf16-mixed' if a.cuda else '32-true'}",
        f"--trainer.max_time=00:00:{seconds // 60:02d}:{seconds % 60:02d}",
        *extra,
    ]
    started = time.monotonic()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=max(1, a.left()))
    out = {"ok": result.returncode == 0, "seconds": time.monotonic() - started, "command": " ".join(command[1:])}
    if not out["ok"]:
        out["last_lines"] = (result.stdout + result.stderr).strip().splitlines()[-5:]
    return out, a.work / "gpu-check" / name


def train(a, report: dict) -> dict:
    """train.py on the timed config and batch with synthetic rows (64 ids of the model's vocabulary: the same compute),
    no gradient accumulation or validation, diagnostics every 10 (every 2 on CPU); tokens/s and MFU are the medians
    of the logged windows after the first, which holds the warm-up."""
    every = 10 if a.cuda else 2
    extra = [
        "--data.prepared=null",
        "--data.tokenizer=null",
        "--data.dataset=null",
        "--data.train_files=null",
        "--data.val_files=null",
        "--data.synthetic.vocab_size=64",
        f"--data.batch_size={a.batch_size}",
        "--data.global_batch=null",
        f"--data.num_workers={8 if a.cuda else 0}",
        f"--trainer.max_steps={a.train_steps}",
        f"--trainer.log_every_n_steps={every}",
        f"--diagnostics.every_n_steps={every}",
        "--trainer.limit_val_batches=0",
        "--trainer.num_sanity_val_steps=0",
    ]
    out, run_dir = fit(a, a.config_path, "train", 90, extra)
    if out["ok"]:
        series = read_metrics(run_dir)
        steps = series.get("train/loss", [])
        out["steps"] = steps[-1][0] + 1 if steps else 0
        for key, column in (("tokens_per_sec", "train/device/items_per_sec"), ("mfu", "train/device/mfu")):
            values = [v for _, v in sorted(series.get(column, []))]
            out[key] = statistics.median(values[1:] or values) if values else None
        loop = report.get("step_time", {})
        if loop.get("ok") and out["tokens_per_sec"]:
            out["ratio_to_loop"] = out["tokens_per_sec"] / loop["tokens_per_sec"]
    return out


def science(a, report: dict) -> dict:
    """`off` and `learned` on the residual-peak GPU config (each at most 3 minutes with start-up: 160 s of training,
    `learned` for as many steps as `off` reached; a few small steps on CPU), their late-window summaries (late.json,
    and block 0's token-0 ratio) and one figure."""
    if not (REPO / a.science_config).is_file():
        return {
            "ok": False,
            "skipped": f"{a.science_config} does not exist yet (issue 28 makes it); give --science_config",
        }
    extra = (
        []
        if a.cuda
        else [
            f"--trainer.max_steps={a.science_steps}",
            "--trainer.log_every_n_steps=5",
            "--diagnostics.every_n_steps=5",
            "--data.batch_size=16",
            "--data.val_rows=32",
            "--data.num_workers=0",
        ]
    )  # CPU: the code path, small
    runs, curves = {}, {}
    for i, mode in enumerate(("off", "learned")):
        same = (
            [f"--trainer.max_steps={runs['off']['steps']}"] if a.cuda and runs.get("off", {}).get("ok") else []
        )  # off may stop at its time cap
        runs[mode], run_dir = fit(
            a, a.science_config, mode, min(160, (a.left() - 20) / (2 - i)), [f"--model.vscale={mode}", *extra, *same]
        )
        if runs[mode]["ok"]:
            series = read_metrics(run_dir)
            late = json.loads((run_dir / "late.json").read_text())
            layer_0 = late_median(series.get(SCIENCE[0], []))
            runs[mode] |= {
                "steps": max(s for s, _ in series["train/loss"]) + 1,
                "late": late | ({f"late/{SCIENCE[0]}": layer_0} if layer_0 else {}),
            }
            curves[mode] = {n: [(s, [v]) for s, v in series[n]] for n in SCIENCE if n in series}
    names = [n for n in SCIENCE if any(n in c for c in curves.values())]
    if curves and names:
        training_curves(curves, names, a.out / "science.png", f"{a.science_config}: off vs learned")
    return {
        "ok": all(r["ok"] for r in runs.values()),
        "config": a.science_config,
        "runs": runs,
        "figure": "science.png" if curves else None,
    }


STAGES = {"smoke": smoke, "cuda_tests": cuda_tests, "step_time": step_time, "train": train, "science": science}


def number(value, spec: str = ".3g") -> str:
    return "n/a" if value is None else format(value, spec)


def stage_lines(name: str, r: dict) -> list[str]:
    """One stage's part of gpu_check.md."""
    if "error" in r or "skipped" in r:
        return [f"{name}: {'failed: ' + r['error'] if 'error' in r else 'skipped: ' + r['skipped']}"]
    if name == "smoke":
        versions = ", ".join(f"{k} {v}" for k, v in r["versions"].items())
        return [
            f"smoke (the entry points' imports, 5 steps): {'ok' if r['ok'] else 'NON-FINITE'}, "
            f"loss {r['losses'][0]:.3f} -> {r['losses'][-1]:.3f}; {versions}"
        ]
    if name == "cuda_tests":
        return [f"CUDA tests: {r['summary']}" + ("" if r["cuda"] else " (GPU-only: skipped without CUDA)")]
    if name == "step_time":
        lines = [
            f"hand-written loop, batch {r['batch']}, {r['steps']} timed steps per variant, bf16 {r['bf16']}",
            "",
            "| variant | median ms/step | ratio to off |",
            "| --- | --- | --- |",
        ]
        lines += [f"| {n} | {v['median_ms']:.1f} | {v['ratio']:.3f} |" for n, v in r["variants"].items()]
        memory = "n/a" if r["peak_memory_gib"] is None else f"{r['peak_memory_gib']:.1f} GiB"
        return lines + [
            "",
            f"tokens/s (off): {r['tokens_per_sec']:.0f}; MFU (off): {number(r['mfu'])}; peak memory: {memory}",
        ]
    if name == "train":
        if not r["ok"]:
            return ["train.py fit: failed: " + " | ".join(r["last_lines"])]
        return [
            f"train.py fit ({r['steps']} steps in {r['seconds']:.0f} s): tokens/s "
            f"{number(r['tokens_per_sec'], '.0f')}, MFU {number(r['mfu'])}, ratio to the hand-written loop "
            f"{number(r.get('ratio_to_loop'))}"
        ]
    runs = r["runs"]
    lines = [
        f"science ({r['config']}): "
        + ", ".join(
            f"{m} {'ok, ' + str(x['steps']) + ' steps' if x['ok'] else 'failed: ' + ' | '.join(x['last_lines'])}"
            f" in {x['seconds']:.0f} s"
            for m, x in runs.items()
        ),
        "",
        "| late-window median | " + " | ".join(runs) + " |",
        "| --- |" + " --- |" * len(runs),
    ]
    lines += [
        f"| {n} | " + " | ".join(number(x.get("late", {}).get(f"late/{n}")) for x in runs.values()) + " |"
        for n in SCIENCE
    ]
    return lines + (["", f"figure: {r['figure']}"] if r["figure"] else [])


def markdown(report: dict) -> str:
    lines = [f"# GPU check: {report['device_name']}", "", f"torch {report['torch']}, {report['config']}", ""]
    for name in STAGES:
        if name in report:
            lines += [f"## {name}", "", *stage_lines(name, report[name]), ""]
    return "\n".join(lines + [f"{report['seconds']:.0f} s in all", ""])


def run_stage(a, report: dict, name: str) -> None:
    """One stage, its failure recorded rather than raised, then the report so far written out."""
    started = time.monotonic()
    if a.left() < 20:
        report[name] = {"ok": False, "skipped": f"the {a.budget:.0f} s budget is spent"}
    else:
        try:
            report[name] = STAGES[name](a, report)
        except Exception as e:  # the later stages still run, and the report says what broke
            report[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    report[name]["stage_seconds"] = time.monotonic() - started
    report["seconds"] = time.monotonic() - a.started
    (a.out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    (a.out / "gpu_check.md").write_text(markdown(report))
    print("\n".join(stage_lines(name, report[name])), flush=True)


def arguments(argv: list[str] | None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--config", help="config whose model is timed and trained (default: paper-0.1b on cuda, tiny on cpu)"
    )
    p.add_argument("--steps", type=int, help="timed steps per variant (default 20 on cuda, 3 on cpu)")
    p.add_argument(
        "--batch_size", type=int, help="rows per step (default: the config's data.batch_size on cuda, 4 on cpu)"
    )
    p.add_argument("--train_steps", type=int, help="steps of the train.py leg (default 150 on cuda, 6 on cpu)")
    p.add_argument("--science_config", default="configs/bb-peak-gpu.yaml", help="config of the science leg")
    p.add_argument(
        "--science_steps", type=int, default=10, help="steps of each science run on cpu (cuda: the config's)"
    )
    p.add_argument(
        "--budget", type=float, default=540, help="seconds for all stages; a stage's runs stop within what is left"
    )
    p.add_argument("--work", type=Path, help="scratch directory of the train.py runs (default: a temporary one)")
    a = p.parse_args(argv)
    a.cuda = a.device == "cuda"
    a.config_path = a.config or ("configs/paper-0.1b.yaml" if a.cuda else "configs/tiny.yaml")
    a.config = yaml.safe_load((REPO / a.config_path).read_text())
    a.steps = a.steps or (20 if a.cuda else 3)
    a.batch_size = a.batch_size or (a.config["data"]["batch_size"] if a.cuda else 4)
    a.train_steps = a.train_steps or (150 if a.cuda else 6)
    a.started = time.monotonic()
    a.left = lambda: a.budget - (time.monotonic() - a.started)
    return a


def main(argv: list[str] | None = None) -> dict:
    a = arguments(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    report = {
        "device": a.device,
        "device_name": torch.cuda.get_device_name() if a.cuda else "cpu",
        "torch": torch.__version__,
        "config": a.config_path,
        "budget_s": a.budget,
    }
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        a.work = (a.work or Path(scratch)).resolve()
        for name in STAGES:
            run_stage(a, report, name)
    return report


if __name__ == "__main__":
    main()
