"""`eval.py profile`: the method §3 profile of any pretrained model, no training."""

import json
import random
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Literal

import datasets
import torch
from tqdm import tqdm
from transformers import AutoConfig

from vscale.cli_values import Strings, as_list
from vscale.data import StreamingRows, load_tokenizer, local_format
from vscale.diagnostics import diagnose_batches
from vscale.errors import ConfigError
from vscale.eval import plots, violin
from vscale.eval.options import Rows, at_least_one
from vscale.hub import from_hub
from vscale.model import check_model, from_pretrained, vscale_modules


@dataclass
class ProfileOptions(Rows):
    """The profile (method §3) of a pretrained model, no training: every `vscale.diagnose` metric
    pooled over the rows of `batches` batches of packed text (and alpha_h, M_0, S_0 per head), written
    to profile.json with sink_rate.png, token0_ratio.png, gsink_ratio.png, grad_norm_violin.png and
    alpha_heads.png in `out`.

    Args:
        model: Hugging Face model directory or hub name (Llama, Mistral, Qwen2, Qwen3); a directory with vscale.json
            (eval.py export) is profiled with its V-scale. Its own tokenizer is used.
        out: Output directory.
        files: Local .txt/.jsonl/.json/.parquet text files, instead of --dataset.
        split: Split of the hub dataset.
        text_field: Column holding the text.
        batches: Batches whose rows the metrics are pooled over.
        dtype: Weights' dtype: bfloat16, float32 or auto (the checkpoint's); default bfloat16 on a GPU, float32 on CPU.
        device_map: transformers device_map (cuda:0, cpu, auto, ...); default: the whole model on the current GPU, or on
            the CPU without one. The diagnostics need all weights on one device: a model that accelerate splits or
            offloads is refused.
    """

    seq_len: int = 512
    batch_size: int = 4
    model: str | None = None
    out: str = "profile"
    files: Strings | None = None
    split: str = "validation"
    text_field: str = "text"
    batches: int = 8
    dtype: Literal["bfloat16", "float32", "auto"] | None = None
    device_map: str | None = None

    def __post_init__(self):
        super().__post_init__()
        self.files = as_list(self.files)
        if not self.model:
            raise ConfigError("--model: give a Hugging Face model directory or hub name, e.g. --model Qwen/Qwen3-0.6B.")
        if bool(self.files) == bool(self.dataset):
            raise ConfigError(
                "--files / --dataset: give exactly one text source, e.g. "
                '--files "[data/tiny/val.jsonl]" or --dataset allenai/c4 --dataset_config en.'
            )
        if self.files:
            local_format(self.files, "--files")
        at_least_one(batches=self.batches)
        if self.dtype not in (None, "bfloat16", "float32", "auto"):
            raise ConfigError(f"--dtype {self.dtype!r}: choose bfloat16, float32 or auto.")


def profile(o: ProfileOptions) -> dict:
    """`ProfileOptions`: the profile of the model, written with its figures."""
    config = from_hub(AutoConfig.from_pretrained, o.model, "--model")
    check_model(config, f"--model {o.model!r}", lengths={"--seq_len": o.seq_len})
    torch.manual_seed(o.seed)
    random.seed(o.seed)
    tokenizer = load_tokenizer(o.model, "--model")
    check_model(config, f"--model {o.model!r}", tokenizer, "its tokenizer")
    ids = _batches(_load_rows(o, tokenizer, o.batches * o.batch_size), o.batch_size, o.batches, o.seq_len)
    cuda = torch.cuda.is_available()
    dtype = o.dtype or ("bfloat16" if cuda else "float32")
    device_map = o.device_map or ("cuda" if cuda else None)
    lm = _load_resident(o.model, dtype, device_map)
    ids = [b.to(lm.get_input_embeddings().weight.device) for b in ids]
    metrics, norms, heads = diagnose_batches(lm, tqdm(ids, desc="batches"))

    out_dir = Path(o.out)
    label = Path(o.model).resolve().name if Path(o.model).is_dir() else o.model
    figures = [
        *violin.eval_figures({label: metrics}, {label: norms}, out_dir),
        plots.alpha_heatmap({label: heads["sink/alpha"]}, out_dir),
    ]
    scalers, n = vscale_modules(lm), len(ids)
    result = {
        "model": o.model,
        "model_type": config.model_type,
        "vscale": scalers[0].mode if scalers else None,
        "dtype": str(next(lm.parameters()).dtype).removeprefix("torch."),
        "device_map": device_map,
        "data": {
            "files": o.files,
            "dataset": o.dataset,
            "dataset_config": o.dataset_config,
            "split": None if o.files else o.split,
            "text_field": o.text_field,
        },
        "seq_len": o.seq_len,
        "batch_size": o.batch_size,
        "batches": n,
        "rows": n * o.batch_size,
        "seed": o.seed,
        "figures": [f.name for f in figures],
        "metrics": metrics,
        "heads": heads,
    }
    (out_dir / "profile.json").write_text(json.dumps(result, indent=1))
    print(
        f"{o.model}: R_GS median over layers {metrics['gsink/ratio/median']:.3g}, max sink rate "
        f"{metrics['sink/rate/max']:.3g}, max token-0 h_out ratio {metrics['act/h_out_ratio/max']:.3g} ({n} batches x "
        f"{o.batch_size} rows x {o.seq_len} tokens)"
    )
    print(f"wrote {out_dir / 'profile.json'} and {len(figures)} figures")
    return result


def _batches(rows: list[torch.Tensor], batch_size: int, batches: int, seq_len: int) -> list[torch.Tensor]:
    n = len(rows) // batch_size
    if n == 0:
        raise ConfigError(
            f"--seq_len {seq_len} / --batch_size {batch_size}: the data gave {len(rows)} rows of {seq_len} tokens, "
            "fewer than one batch; give more text or lower them."
        )
    if n < batches:
        print(f"warning: the data gave {n} full batches of the {batches} asked (--batches); profiling those.")
    return [torch.stack(rows[i * batch_size : (i + 1) * batch_size]) for i in range(n)]


def _load_resident(model: str, dtype: str, device_map: str | None):
    """The model with every weight on one device, frozen: activation gradients only are needed."""
    lm = from_hub(
        from_pretrained,
        model,
        "--model",
        dtype=dtype if dtype == "auto" else getattr(torch, dtype),
        device_map=device_map,
        attn_implementation="sdpa",
    )
    devices = {str(p.device) for p in lm.parameters()}
    if len(devices) > 1 or "meta" in devices:
        placed = sorted(set(map(str, getattr(lm, "hf_device_map", {}).values())) or devices)
        raise ConfigError(
            f"--device_map {device_map!r}: model {model!r} was split over {placed} (offloaded or sharded); the "
            "diagnostics need every weight resident on one device: give --device_map cuda:0 (or cpu) and a device the "
            "model fits on, or --dtype bfloat16."
        )
    return lm.eval().requires_grad_(False)


def _load_rows(o: ProfileOptions, tokenizer, n: int) -> list[torch.Tensor]:
    """The first n rows of the source, packed as in training (docs/method.md §1) by `vscale.data.StreamingRows`;
    files and hub datasets are both streamed, so only what the rows need is read."""
    if o.files:
        ds = datasets.load_dataset(local_format(o.files, "--files"), data_files=o.files, split="train", streaming=True)
    else:
        ds = from_hub(datasets.load_dataset, o.dataset, "--dataset", o.dataset_config, split=o.split, streaming=True)
    try:
        return list(islice(StreamingRows(ds, tokenizer, o.seq_len, o.text_field), n))
    except KeyError as e:
        raise ConfigError(
            f"--text_field {o.text_field!r}: the data has no such column ({e}); name the column that holds the text."
        ) from e
