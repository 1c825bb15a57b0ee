"""`eval.py truncate`: how much of each layer's residual stream comes from beyond the last k tokens."""

import json
import random
from pathlib import Path
from typing import Literal

import torch
from tqdm import tqdm

from vscale.cli_values import Ints, Strings, as_list
from vscale.eval import measure, plots
from vscale.eval.checkpoints import eval_batches, eval_data, labels_for, load_all, recorded_data
from vscale.eval.probes.truncate import WINDOWS, attended_distance, check_kernel, check_windows, truncation
from vscale.errors import ConfigError


def truncate(ckpt: Strings | None = None, label: Strings | None = None, out: str = "truncate", windows: Ints = list(WINDOWS),
             tokenizer: str | None = None, val_files: Strings | None = None, dataset: str | None = None, dataset_config: str | None = None,
             seq_len: int | None = None, batch_size: int | None = None, batches: int = 2, seed: int = 0, keep_sink: bool = True,
             queries: Literal["past_window", "common"] = "past_window"):
    """How much of each layer's residual stream comes from beyond the last k tokens: 1 - cos between
    each layer's output with the full context and with attention limited to the last k tokens (a
    banded causal mask, which drops token 0 for queries t >= k), one line per k over layers, and the
    mean attended distance of each head; by default also with token 0 kept in every window, which
    separates the sink from distance. Writes truncate.json, truncation.png and
    attended_distance.png into `out` (vscale.eval.probes.truncate).

    Args:
        ckpt: Checkpoints: a train.py .ckpt, or a Hugging Face model directory or hub name.
        label: One label per checkpoint (default: the checkpoint paths).
        out: Output directory.
        windows: Window sizes k, in tokens; each below --seq_len.
        tokenizer: Eval tokenizer (default: the first .ckpt's training data config, as are the data fields below).
        val_files: Local eval text files.
        dataset: Hub eval dataset (streamed).
        dataset_config: Hub dataset configuration.
        seq_len: Tokens per eval row.
        batch_size: Rows per eval batch.
        batches: Eval batches whose rows are averaged.
        seed: Seed of everything random.
        keep_sink: Also measure with token 0 kept in every window (one_minus_cos_keep_sink; dashed in the figure), which
            separates the loss of the sink from the loss of distant context.
        queries: Which queries a window is measured on: past_window, every query whose context it cuts (t >= k), or
            common, t >= the largest window for every window (the same positions).
    """
    ckpt, label, windows, val_files = map(as_list, (ckpt, label, windows, val_files))
    labels = labels_for(ckpt, label)
    check_windows(windows)
    if batches < 1:
        raise ConfigError(f"--batches {batches}: give at least 1.")
    torch.manual_seed(seed)
    random.seed(seed)
    loaded = load_all(ckpt, labels)
    data = eval_data(dict(tokenizer=tokenizer, val_files=val_files, dataset=dataset, dataset_config=dataset_config, seq_len=seq_len,
                          batch_size=batch_size), recorded_data(loaded))
    seq = data.hparams.seq_len
    check_windows(windows, seq)
    for x in loaded.values():
        measure.check_fits(x, data.tokenizer, seq, [])
        check_kernel(x.model, f"checkpoint {x.path!r}")
    rows = eval_batches(data, batches)

    where = f"t >= {max(windows)}" if queries == "common" else "t >= k"
    result = {"windows": windows, "queries": f"{where} of rows of {seq} tokens", "rows": sum(b.shape[0] for b in rows),
              "data": dict(data.hparams), "seed": seed, "checkpoints": {}}
    for name, x in tqdm(loaded.items(), desc="checkpoints"):
        c = result["checkpoints"][name] = {"path": x.path, "vscale": x.vscale,
                                           "one_minus_cos": truncation(x.model, rows, windows, common=queries == "common")}
        if keep_sink:
            c["one_minus_cos_keep_sink"] = truncation(x.model, rows, windows, keep_sink=True, common=queries == "common")
        c["attended_distance"] = attended_distance(x.model, rows).tolist()
    _write(result, Path(out))
    return result


def _write(result: dict, out_dir: Path) -> None:
    checkpoints = result["checkpoints"]
    figures = [plots.truncation({k: c["one_minus_cos"] for k, c in checkpoints.items()}, out_dir / "truncation.png",
                                {k: c["one_minus_cos_keep_sink"] for k, c in checkpoints.items() if "one_minus_cos_keep_sink" in c}),
               plots.head_heatmap({k: c["attended_distance"] for k, c in checkpoints.items()}, out_dir / "attended_distance.png",
                                  "mean attended distance (tokens)", "Mean attended distance sum_j a_tj (t - j) per head, full context", vmin=0.0)]
    result["figures"] = [f.name for f in figures]
    (out_dir / "truncate.json").write_text(json.dumps(result, indent=1))
    for name, c in checkpoints.items():
        print(f"{name}: 1 - cos at the last layer, " + ", ".join(f"k={k}: {v[-1]:.3g}" for k, v in c["one_minus_cos"].items()))
    print(f"wrote {out_dir / 'truncate.json'} and {len(figures)} figures")
