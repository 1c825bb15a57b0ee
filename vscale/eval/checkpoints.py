"""The checkpoints `eval.py` measures, and the data it measures them on: a train.py checkpoint (a
file, with its training data config) or a Hugging Face model directory or hub name."""

from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from vscale.data import DataSource, PackedTextData, split_batch
from vscale.diagnostics import check_seq_len
from vscale.errors import ConfigError, MissingInput
from vscale.eval.options import EvalData
from vscale.hub import from_hub
from vscale.model import from_pretrained, vscale_modules
from vscale.model.load import load_trained


@dataclass
class Loaded:
    """A checkpoint ready to measure, and what produced it."""

    model: torch.nn.Module
    path: str
    vscale: str
    hparams: dict = field(default_factory=dict)
    data: dict | None = None
    seed: int | None = None


def _init_args(hparams) -> dict:
    """Saved hyperparameters as constructor arguments (LightningCLI adds a private `_instantiator`)."""
    return {k: v for k, v in dict(hparams).items() if not k.startswith("_")}


def load_checkpoint(path: str) -> Loaded:
    """A Lightning checkpoint of this project (a file) or a Hugging Face model (directory or hub name)."""
    check_exists(path)
    if Path(path).is_file():
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise ConfigError(
                f"checkpoint {path!r} cannot be read ({type(e).__name__}: "
                f"{e}); give a .ckpt written by train.py or a model directory."
            ) from e
        hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
        if not hp or "state_dict" not in ckpt or "vscale" not in hp:
            raise ConfigError(
                f"checkpoint {path!r} is not a vscale training checkpoint (no "
                "hyper_parameters/state_dict); give a .ckpt written by train.py."
            )
        hp, data = _init_args(hp), _init_args(ckpt.get("datamodule_hyper_parameters") or {}) or None
        model = load_trained(
            ckpt["state_dict"], hp, f"checkpoint {path!r}"
        )  # measured eagerly; a compiled run's weights are the same
        return Loaded(model.eval(), path, hp["vscale"], hp, data, data.get("seed") if data else None)
    model = from_hub(from_pretrained, path, "--ckpt", dtype=torch.float32)
    return Loaded(model.eval(), path, vscale_modules(model)[0].mode if vscale_modules(model) else "off")


def check_exists(path: str) -> None:
    """A checkpoint path names a file, a model directory, or (anything else) a hub name."""
    if Path(path).is_dir() and not (Path(path) / "config.json").is_file():
        inside = sorted(str(p) for p in Path(path).glob("**/*.ckpt"))[-3:]
        hint = f"e.g. one of {inside}" if inside else "runs/<experiment>/<name>/checkpoints/last.ckpt"
        raise MissingInput(
            f"checkpoint {path!r}: a directory with no model in it (no config.json); give a .ckpt written by train.py "
            f"({hint}), or a directory written by eval.py export or save_pretrained."
        )
    if not Path(path).exists() and (path.endswith(".ckpt") or path.startswith(("/", ".", "~"))):
        raise MissingInput(
            f"checkpoint {path!r} does not exist; give a .ckpt written by train.py, a model directory or a hub name."
        )


def load_all(ckpt: list[str], labels: list[str]) -> dict[str, Loaded]:
    """Each checkpoint, by its label; every path is checked before the first loads."""
    for path in ckpt:
        check_exists(path)
    return {l: load_checkpoint(c) for l, c in tqdm(list(zip(labels, ckpt)), desc="loading")}


def recorded_data(loaded: dict[str, Loaded]) -> dict | None:
    """The training data config of the first train.py checkpoint (None when all are model directories)."""
    return next((x.data for x in loaded.values() if x.data), None)


def eval_data(options: EvalData, recorded: dict | None) -> PackedTextData:
    """The data of `options` over the `recorded` training data config (`EvalData`); the first rows of its
    training split calibrate the static W8A8 ranges."""
    args = dict(recorded or {})
    given = options.given()
    if given.keys() & {"val_files", "dataset"}:
        given.setdefault("train_files", given.get("val_files"))
        args.pop("prepared", None)
    args |= vars(DataSource.of(args).replaced(given)) | given
    if "tokenizer" not in args:
        raise ConfigError(
            "eval data: give --tokenizer and --val_files (or --dataset), "
            "or a train.py checkpoint, which records its data config."
        )
    if "seq_len" not in given:  # a given --seq_len was checked by EvalData
        check_seq_len(args.get("seq_len", 1024), "--seq_len (the checkpoint's data.seq_len)")
    return PackedTextData(**args)


def eval_batches(data: PackedTextData, n: int) -> list[torch.Tensor]:
    data.setup("validate")
    batches = [split_batch(b)[0] for _, b in zip(range(n), data.val_dataloader())]
    if not batches:
        raise ConfigError("eval data: the validation split gave no rows; give more text or a shorter data.seq_len.")
    return batches
