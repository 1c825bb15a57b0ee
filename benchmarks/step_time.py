"""Time per optimizer step of a config's model, as ratios to a baseline measured in the same run.

Variants run round-robin (rotating the order) in one process on the same batch, so drift hits
all of them alike.
    python benchmarks/step_time.py --compare modes         # each V-scale mode vs `off`
    python benchmarks/step_time.py --compare diagnostics   # diagnostics every step / every 10 vs none
    python benchmarks/step_time.py --compare guard         # NonFiniteGuard's per-step check vs none
    python benchmarks/step_time.py --compare arms          # each attention arm vs `softmax` (V-scale --mode)
The A/A control repeats the baseline: its ratio is this machine's noise floor.
A diagnostic step does what the Diagnostics callback does (hooks, metrics, one host sync),
minus writing the log.
"""

import argparse
import statistics
import time

import torch
import yaml

from vscale.diagnostics import Pooled, Probe, flatten
from vscale.model import ARMS, MODES, apply_interventions, build_config, build_model
from vscale.train.callbacks import gradients_finite
from vscale.train.optim import build_optimizer


def variants(compare: str, mode: str) -> dict[str, tuple[str, str, int, bool]]:
    """name -> (V-scale mode, attention arm, diagnostics interval (0 = none), non-finite guard). The first is the
    baseline."""
    if compare == "modes":
        return {m: (m, "softmax", 0, False) for m in MODES}
    if compare == "arms":
        return {
            "softmax": (mode, "softmax", 0, False),
            "A/A control": (mode, "softmax", 0, False),
            **{arm: (mode, arm, 0, False) for arm in ARMS if arm != "softmax"},
        }
    if compare == "guard":
        return {
            "no guard": (mode, "softmax", 0, False),
            "A/A control": (mode, "softmax", 0, False),
            "guard": (mode, "softmax", 0, True),
        }
    return {
        "no diagnostics": (mode, "softmax", 0, False),
        "A/A control": (mode, "softmax", 0, False),
        "every step": (mode, "softmax", 1, False),
        "every 10 steps": (mode, "softmax", 10, False),
    }


def step(model, opt, batch: torch.Tensor, measure: bool, guard: bool, bf16: bool) -> None:
    """One optimizer step; a measured one does what the Diagnostics callback does, minus the log."""
    probe = Probe(model).__enter__() if measure else None
    with torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    if probe is not None:
        probe.__exit__(None, None, None)
        pooled = Pooled(sync=False)
        pooled.update(probe.sums())
        flatten(pooled.compute())
    if guard:
        gradients_finite(opt)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


def time_round_robin(runs: dict, batch: torch.Tensor, warmup: int, steps: int, bf16: bool) -> None:
    """Each variant in turn, the order rotated every step; step times appended to each run's lists."""
    sync = torch.cuda.synchronize if batch.device.type == "cuda" else (lambda: None)
    order = list(runs.values())
    for i in range(warmup + steps):
        for model, opt, every, guard, all_steps, plain_steps in order[i % len(order) :] + order[: i % len(order)]:
            measure = every > 0 and i % every == 0
            sync()
            t0 = time.perf_counter()
            step(model, opt, batch, measure, guard, bf16)
            sync()
            if i >= warmup:
                all_steps.append(time.perf_counter() - t0)
                if not measure:
                    plain_steps.append(all_steps[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tiny.yaml")
    parser.add_argument("--compare", choices=["modes", "arms", "diagnostics", "guard"], default="modes")
    parser.add_argument("--mode", default="off", help="V-scale mode for --compare arms, diagnostics and guard")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--batch_size", type=int, help="override data.batch_size")
    args = parser.parse_args()

    config = yaml.safe_load(open(args.config))
    m, d = config["model"], config["data"]
    batch = torch.randint(
        0, m["model_config"]["vocab_size"], (args.batch_size or d["batch_size"], d["seq_len"]), device=args.device
    )
    runs = {}
    for name, (mode, arm, every, guard) in variants(args.compare, args.mode).items():
        torch.manual_seed(0)
        model = apply_interventions(build_model(build_config(m["model_config"], None), None), mode, arm).to(args.device)
        opt, _ = build_optimizer(model, 1e-4, 1e-5, 10, 1000, 0.1, (0.9, 0.95), 1e-8)
        runs[name] = (model, opt, every, guard, [], [])
    time_round_robin(runs, batch, args.warmup, args.steps, args.bf16)

    base_name = next(iter(runs))
    base_mean = statistics.mean(runs[base_name][4])
    base_median = statistics.median(runs[base_name][4])
    print(
        f"{args.config} on {args.device} ({torch.get_num_threads()} threads), batch {tuple(batch.shape)}, "
        f"{args.steps} steps per variant, bf16={args.bf16}"
    )
    print(f"{'variant':<16}{'mean ms/step':>14}{'ratio (mean)':>14}{'plain-step median ratio':>25}")
    for name, (_, _, _, _, all_steps, plain_steps) in runs.items():
        mean = statistics.mean(all_steps)
        plain = f"{statistics.median(plain_steps) / base_median:.3f}" if plain_steps else "-"
        print(f"{name:<16}{mean * 1e3:>14.1f}{mean / base_mean:>14.3f}{plain:>25}")


if __name__ == "__main__":
    main()
