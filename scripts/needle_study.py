"""The needle study's measurements (README, "The needle study"): each finished run of a needle experiment kept
(scripts/keep_runs.py), then measured at its checkpoints, the results added to the kept run's metrics.csv as columns of
their own, so that `eval.py compare` summarises and pairs them like any training metric:

    python scripts/needle_study.py runs/needle-tiny --out docs/results/needle-modes-runs --figure docs/needle-modes.png

Columns, each logged at the step of the checkpoint measured (its global step, the number in its file name):

- `needle/curve/full/single/128`: single-needle accuracy at 128 tokens in full precision, at every periodic checkpoint
  (and last.ckpt where no periodic checkpoint has its step): the accuracy curve.
- `needle/onset_step`: the first checkpoint step whose curve accuracy is at least ONSET (retrieval onset); a run that
  never gets there has the step one checkpoint interval past its last checkpoint (a censored value that ranks after
  every run that got there), and `needle/onset_reached` 0 (else 1).
- at the final checkpoint (last.ckpt) only: `needle/<precision>/<kind>/128`, the accuracy of kind single or multi in
  full precision (`full`) and under each W8A8 mode (`per_token`, `per_tensor`, `per_tensor_down_proj`);
  `needle/drop_<mode>/<kind>/128`, full minus that mode; `ppl/<precision>`, the perplexity of the eval rows.

A metric logged at one step is its own late-window value (`vscale.runs.late`: the median of the last quarter of a
run's logged values, at least one), so compare reads the final value of each; the curve's late window is the median
of its last quarter of checkpoints. Every accuracy is over `--seeds` x `--n` cases (vscale.eval.needle, greedy decoding,
exact match). A run is measured once: its needle.json (the measurements with their protocol and timings) is written
last, and a run that has one is skipped, so an interrupted study resumes where it stopped.
"""

import argparse
import contextlib
import csv
import importlib.util
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vscale.data import split_batch
from vscale.eval import measure, needle, quant
from vscale.eval.checkpoints import eval_batches, eval_data, load_checkpoint
from vscale.eval.curves import seed_lines
from vscale.eval.options import EvalData
from vscale.runs import arm_of, read_metrics
from vscale.train import cpu


def _beside(name: str):
    """A script beside this one, however this one was started (a command, or imported by a test)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


keep = _beside("keep_runs").keep
LENGTH = 128
"""The needle context length: the trained one of configs/needle-tiny.yaml."""
KINDS = ("single", "multi")
ONSET = 0.5
"""Retrieval has set in at the first checkpoint whose single-needle accuracy reaches this."""
CURVE = f"needle/curve/{measure.FULL}/single/{LENGTH}"
ONSET_STEP, ONSET_REACHED = "needle/onset_step", "needle/onset_reached"
RECORD = "needle.json"


def accuracy_name(precision: str, kind: str) -> str:
    return f"needle/{precision}/{kind}/{LENGTH}"


def drop_name(mode: str, kind: str) -> str:
    return f"needle/drop_{mode}/{kind}/{LENGTH}"


@dataclass
class Protocol:
    """What every checkpoint is measured on: the eval rows (perplexity), training rows (W8A8 calibration), the needle
    filler text and cases."""

    tokenizer: object
    texts: list[str]
    rows: list[torch.Tensor]
    calibration: list[torch.Tensor]
    quant: list[str]
    seeds: list[int]
    n: int

    def accuracy(self, model, kind: str) -> float:
        """The fraction right of the seeds' n cases each (equal counts: the mean over seeds)."""
        return needle.evaluate(model, self.tokenizer, self.texts, [LENGTH], self.seeds, self.n, kind)[LENGTH]["mean"]

    def describe(self) -> dict:
        return {
            "length": LENGTH,
            "kinds": list(KINDS),
            "seeds": self.seeds,
            "n": self.n,
            "quant": self.quant,
            "onset": ONSET,
            "eval_rows": sum(len(b) for b in self.rows),
            "calibration_rows": sum(len(b) for b in self.calibration),
            "cpu_capability": cpu.dispatched(),
        }


@dataclass
class Settings:
    """The protocol's sizes (the command's flags)."""

    quant: list[str] = field(default_factory=lambda: list(quant.QUANT_MODES))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    n: int = 40
    batches: int = 8
    calib_batches: int = 4


def protocol(data_config: dict, settings: Settings) -> Protocol:
    """The protocol on a run's recorded data config: its eval text and rows, its training rows for calibration."""
    data = eval_data(EvalData(), data_config)
    rows = eval_batches(data, settings.batches)
    data.setup("fit")
    calibration = [split_batch(b)[0] for _, b in zip(range(settings.calib_batches), data.train_dataloader())]
    return Protocol(
        data.tokenizer, data.validation_texts(), rows, calibration, settings.quant, settings.seeds, settings.n
    )


def checkpoints(run_dir: Path) -> dict[int, Path]:
    """{global step: checkpoint}: the periodic ones, and last.ckpt where none has its step."""
    found = {int(p.stem.removeprefix("step")): p for p in (run_dir / "checkpoints").glob("step*.ckpt")}
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        found.setdefault(global_step(last), last)
    return dict(sorted(found.items()))


def global_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])


def onset(curve: dict[int, float]) -> tuple[int, int]:
    """(onset step, reached): the first step whose accuracy is at least ONSET; else one checkpoint interval (the
    smallest gap between checkpoints, or the only step) past the last step, and reached 0."""
    steps = sorted(curve)
    reached = next((s for s in steps if curve[s] >= ONSET), None)
    if reached is not None:
        return reached, 1
    interval = min((b - a for a, b in zip(steps, steps[1:])), default=steps[-1])
    return steps[-1] + interval, 0


def final_measurements(model, p: Protocol) -> dict[str, float]:
    """At one checkpoint: perplexity and each kind's accuracy in full precision and under each W8A8 mode (one
    calibration per mode), and each mode's drop (full minus the mode)."""
    out = {}
    for precision in (measure.FULL, *p.quant):
        with contextlib.ExitStack() as stack:
            if precision != measure.FULL:
                stack.enter_context(quant.w8a8(model, precision, p.calibration))
            out[f"ppl/{precision}"] = measure.perplexity(model, p.rows)["ppl"]
            for kind in KINDS:
                out[accuracy_name(precision, kind)] = p.accuracy(model, kind)
    for mode in p.quant:
        for kind in KINDS:
            out[drop_name(mode, kind)] = out[accuracy_name(measure.FULL, kind)] - out[accuracy_name(mode, kind)]
    return out


def measure_run(run_dir: Path, p: Protocol) -> dict:
    """The curve over the run's checkpoints, its onset, and the final measurements at last.ckpt, with timings."""
    curve, seconds = {}, []
    for step, path in checkpoints(run_dir).items():
        start = time.perf_counter()
        curve[step] = p.accuracy(load_checkpoint(str(path)).model, "single")
        seconds.append(time.perf_counter() - start)
    last = run_dir / "checkpoints" / "last.ckpt"
    start = time.perf_counter()
    final = final_measurements(load_checkpoint(str(last)).model, p)
    step, reached = onset(curve)
    return {
        "run": str(run_dir),
        "protocol": p.describe(),
        "curve": curve,
        "final_step": global_step(last),
        "final": final | {ONSET_STEP: step, ONSET_REACHED: reached},
        "seconds": {"curve_per_checkpoint": seconds, "final": time.perf_counter() - start},
    }


def add_columns(kept: Path, values: dict[int, dict[str, float]]) -> None:
    """Rows {step: {column: value}} added to kept/metrics.csv in step order (a step's rows in their order), replacing
    any earlier values of those columns: measuring a run again (one interrupted before its needle.json) leaves one."""
    with open(kept / "metrics.csv", newline="") as f:
        reader = csv.DictReader(f)
        columns, rows = list(reader.fieldnames or ["step"]), list(reader)
    added = list(dict.fromkeys(c for by_name in values.values() for c in by_name))
    rows = [
        r
        for r in ({k: v for k, v in r.items() if k not in added} for r in rows)
        if any(v for k, v in r.items() if k != "step")
    ]
    rows += [{"step": str(step), **{c: repr(float(v)) for c, v in by_name.items()}} for step, by_name in values.items()]
    rows.sort(key=lambda r: int(r["step"]))
    with open(kept / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*columns, *(c for c in added if c not in columns)], restval="")
        writer.writeheader()
        writer.writerows(rows)


def columns(record: dict) -> dict[int, dict[str, float]]:
    """A measured run's metrics.csv values by step: the curve at every checkpoint, the rest at the final one (a record
    read back from needle.json has its steps as text)."""
    curve, last = {int(step): acc for step, acc in record["curve"].items()}, int(record["final_step"])
    return {step: {CURVE: acc, **(record["final"] if step == last else {})} for step, acc in curve.items()}


def record_run(run_dir: Path, kept: Path, p: Protocol) -> dict:
    """Measure one run into its kept copy: the columns first, needle.json (the mark of a measured run) last."""
    record = measure_run(run_dir, p)
    add_columns(kept, columns(record))
    (kept / RECORD).write_text(json.dumps(record, indent=1))
    return record


def study(experiment: Path, out: Path, settings: Settings) -> list[str]:
    """Keep and measure every finished run of the experiment not measured yet; the names of those measured."""
    protocols, measured = {}, []
    for run_dir in sorted(r for r in experiment.iterdir() if (r / "late.json").is_file()):
        keep(run_dir, out)
        if (out / run_dir.name / RECORD).is_file():
            continue
        data = load_checkpoint(str(run_dir / "checkpoints" / "last.ckpt")).data
        key = json.dumps(data, sort_keys=True)
        if key not in protocols:  # built once per data config: tokenizing the training rows takes the longest
            protocols[key] = protocol(data, settings)
        record = record_run(run_dir, out / run_dir.name, protocols[key])
        per = record["seconds"]["curve_per_checkpoint"]
        final, single = record["final"], accuracy_name(measure.FULL, "single")
        print(
            f"{run_dir.name}: onset step {final[ONSET_STEP]}, final single {final[single]:.3f}, {len(per)} checkpoints "
            f"at {sum(per) / len(per):.1f} s each, final measurements {record['seconds']['final']:.1f} s"
        )
        measured.append(run_dir.name)
    return measured


def arm_curves(kept: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{arm: {run: its accuracy curve}} of every measured run in `kept`, the baseline arm first."""
    arms: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for run in sorted(r for r in kept.iterdir() if (r / RECORD).is_file()):
        arms.setdefault(arm_of(run.name), {})[run.name] = read_metrics(run)[CURVE]
    return dict(sorted(arms.items(), key=lambda a: a[0] != "off"))


def figure(kept: Path, path: Path) -> Path:
    """The accuracy curves of every measured run in `kept`: one thin line per seed, each arm's mean thick."""
    return seed_lines(
        arm_curves(kept),
        path,
        f"single-needle accuracy at {LENGTH} tokens",
        "checkpoint step",
        ONSET,
        f"retrieval onset: accuracy {ONSET}",
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", type=Path, help="an experiment directory of train.py runs (runs/needle-tiny)")
    p.add_argument(
        "--out", type=Path, required=True, help="where the kept, measured runs go (docs/results/needle-modes-runs)"
    )
    p.add_argument("--figure", type=Path, help="also draw the accuracy curves of every measured run in --out here")
    p.add_argument("--quant", nargs="*", default=Settings().quant, help="W8A8 modes of the final measurements")
    p.add_argument("--seeds", nargs="+", type=int, default=Settings().seeds, help="seeds of the needle cases")
    p.add_argument("--n", type=int, default=Settings.n, help="needle cases per seed and kind")
    p.add_argument("--batches", type=int, default=Settings.batches, help="eval batches of the perplexity")
    p.add_argument(
        "--calib_batches",
        type=int,
        default=Settings.calib_batches,
        help="training batches that calibrate the static W8A8 ranges",
    )
    p.add_argument(
        "--cpu_capability",
        default="avx2",
        help="CPU kernels, pinned as the runs' (README, Reproducibility); 'none' unpinned",
    )
    args = p.parse_args(argv)
    cpu.pin(
        None if args.cpu_capability == "none" else args.cpu_capability, may_restart=argv is None
    )  # a command line restarts itself pinned
    measured = study(
        args.experiment, args.out, Settings(args.quant, args.seeds, args.n, args.batches, args.calib_batches)
    )
    print(f"measured {len(measured)} run(s) into {args.out}: {', '.join(measured) or 'none new'}")
    if args.figure:
        print(f"wrote {figure(args.out, args.figure)}")


if __name__ == "__main__":
    main()
