"""Time per optimizer step of a config's model for each V-scale mode, as ratios to `off`.

Modes run round-robin in one process on the same batch, so drift hits all of them alike:
    python benchmarks/step_time.py --config configs/tiny.yaml --steps 60
"""

import argparse
import statistics
import time

import torch
import yaml

from vscale.hf import apply_vscale, build_model
from vscale.optim import build_optimizer
from vscale.value_scale import MODES


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tiny.yaml")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--batch_size", type=int, help="override data.batch_size")
    args = parser.parse_args()

    config = yaml.safe_load(open(args.config))
    m, d = config["model"], config["data"]
    batch = torch.randint(0, m["model_config"]["vocab_size"], (args.batch_size or d["batch_size"], d["seq_len"]), device=args.device)
    runs = {}
    for mode in MODES:
        torch.manual_seed(0)
        model = apply_vscale(build_model(m["model_config"], None), mode).to(args.device)
        opt, _ = build_optimizer(model, 1e-4, 1e-5, 10, 1000, 0.1, (0.9, 0.95), 1e-8)
        runs[mode] = (model, opt, [])

    def step(model, opt):
        with torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.bf16):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for i in range(args.warmup + args.steps):
        for model, opt, times in runs.values():
            sync()
            t0 = time.perf_counter()
            step(model, opt)
            sync()
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)

    base = statistics.median(runs["off"][2])
    print(f"{args.config} on {args.device} ({torch.get_num_threads()} threads), batch {tuple(batch.shape)}, "
          f"{args.steps} steps per mode, bf16={args.bf16}")
    print(f"{'mode':<10}{'median ms/step':>16}{'ratio to off':>14}")
    for mode, (_, _, times) in runs.items():
        med = statistics.median(times)
        print(f"{mode:<10}{med * 1e3:>16.1f}{med / base:>14.3f}")


if __name__ == "__main__":
    main()
