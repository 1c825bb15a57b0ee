"""`eval.py truncate`: how much of each layer's residual stream comes from beyond the last k tokens."""

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from tqdm import tqdm

from vscale.cli_values import Ints, as_list
from vscale.eval import measure, plots
from vscale.eval.checkpoints import eval_batches, eval_data, load_all, recorded_data
from vscale.eval.options import Checkpoints, EvalData, at_least_one
from vscale.eval.probes.truncate import WINDOWS, attended_distance, check_kernel, check_windows, truncation


@dataclass
class TruncateOptions(EvalData, Checkpoints):
    """How much of each layer's residual stream comes from beyond the last k tokens: 1 - cos between
    each layer's output with the full context and with attention limited to the last k tokens (a
    banded causal mask, which drops token 0 for queries t >= k), one line per k over layers, and the
    mean attended distance of each head; by default also with token 0 kept in every window, which
    separates the sink from distance. Writes truncate.json, truncation.png and
    attended_distance.png into `out` (vscale.eval.probes.truncate).

    Args:
        windows: Window sizes k, in tokens; each below --seq_len.
        batches: Eval batches whose rows are averaged.
        keep_sink: Also measure with token 0 kept in every window (one_minus_cos_keep_sink; dashed in the figure), which
            separates the loss of the sink from the loss of distant context.
        queries: Which queries a window is measured on: past_window, every query whose context it cuts (t >= k), or
            common, t >= the largest window for every window (the same positions).
    """

    out: str = "truncate"
    windows: Ints = field(default_factory=lambda: list(WINDOWS))
    batches: int = 2
    keep_sink: bool = True
    queries: Literal["past_window", "common"] = "past_window"

    def __post_init__(self):
        super().__post_init__()
        self.windows = as_list(self.windows)
        check_windows(self.windows)
        at_least_one(batches=self.batches)


def truncate(o: TruncateOptions) -> dict:
    """`TruncateOptions`: the truncation and attended distance of every checkpoint, written with their figures."""
    torch.manual_seed(o.seed)
    random.seed(o.seed)
    loaded = load_all(o.ckpt, o.labels)
    data = eval_data(o, recorded_data(loaded))
    seq = data.hparams.seq_len
    check_windows(o.windows, seq)
    for x in loaded.values():
        measure.check_fits(x, data.tokenizer, seq, [])
        check_kernel(x.model, f"checkpoint {x.path!r}")
    rows = eval_batches(data, o.batches)

    where = f"t >= {max(o.windows)}" if o.queries == "common" else "t >= k"
    result = {
        "windows": o.windows,
        "queries": f"{where} of rows of {seq} tokens",
        "rows": sum(b.shape[0] for b in rows),
        "data": dict(data.hparams),
        "seed": o.seed,
        "checkpoints": {},
    }
    common = o.queries == "common"
    for name, x in tqdm(loaded.items(), desc="checkpoints"):
        c = result["checkpoints"][name] = {
            "path": x.path,
            "vscale": x.vscale,
            "one_minus_cos": truncation(x.model, rows, o.windows, common=common),
        }
        if o.keep_sink:
            c["one_minus_cos_keep_sink"] = truncation(x.model, rows, o.windows, keep_sink=True, common=common)
        c["attended_distance"] = attended_distance(x.model, rows).tolist()
    _write(result, Path(o.out))
    return result


def _write(result: dict, out_dir: Path) -> None:
    checkpoints = result["checkpoints"]
    figures = [
        plots.truncation(
            {k: c["one_minus_cos"] for k, c in checkpoints.items()},
            out_dir / "truncation.png",
            {k: c["one_minus_cos_keep_sink"] for k, c in checkpoints.items() if "one_minus_cos_keep_sink" in c},
        ),
        plots.head_heatmap(
            {k: c["attended_distance"] for k, c in checkpoints.items()},
            out_dir / "attended_distance.png",
            "mean attended distance (tokens)",
            "Mean attended distance sum_j a_tj (t - j) per head, full context",
            vmin=0.0,
        ),
    ]
    result["figures"] = [f.name for f in figures]
    (out_dir / "truncate.json").write_text(json.dumps(result, indent=1))
    for name, c in checkpoints.items():
        print(
            f"{name}: 1 - cos at the last layer, "
            + ", ".join(f"k={k}: {v[-1]:.3g}" for k, v in c["one_minus_cos"].items())
        )
    print(f"wrote {out_dir / 'truncate.json'} and {len(figures)} figures")
