"""The options the evaluation commands share, as dataclasses whose fields are `eval.py` flags: a command's
options (`RunOptions`, ...) inherit the groups it takes, and jsonargparse reads the fields, with the docs
below, as flat flags (`--ckpt`, `--seq_len`). Each group checks its own fields in `__post_init__`, naming
the flag, so a bad command line is refused before anything loads.

A dataclass collects its bases' fields last base first: `class RunOptions(EvalData, Checkpoints)` lists
--ckpt and --label first, then the data flags, then its own."""

from dataclasses import dataclass

from vscale.cli_values import Strings, as_list
from vscale.diagnostics import check_seq_len
from vscale.errors import ConfigError


@dataclass
class Options:
    """The root of the option groups: each group's `__post_init__` checks its fields, then calls the next."""

    def __post_init__(self):
        pass


@dataclass
class Checkpoints(Options):
    """The checkpoints a command measures.

    Args:
        ckpt: Checkpoints: a train.py .ckpt, or a Hugging Face model directory or hub name.
        label: One label per checkpoint (default: the checkpoint paths).
        out: Output directory.
    """

    ckpt: Strings | None = None
    label: Strings | None = None
    out: str = "eval"

    def __post_init__(self):
        super().__post_init__()
        self.ckpt, self.label = as_list(self.ckpt), as_list(self.label)
        if not self.ckpt:
            raise ConfigError('--ckpt: give one or more checkpoints, e.g. --ckpt "[a.ckpt, b.ckpt]".')
        if len(self.labels) != len(self.ckpt) or len(set(self.labels)) != len(self.labels):
            raise ConfigError(
                f"--label: give one distinct label per --ckpt ({len(self.ckpt)} checkpoints, labels {self.labels})."
            )

    @property
    def labels(self) -> list[str]:
        return self.label or self.ckpt


@dataclass
class Rows(Options):
    """Packed rows of text, as in training (docs/method.md §1).

    Args:
        dataset: Hub dataset (streamed).
        dataset_config: Hub dataset configuration (e.g. en).
        seq_len: Tokens per row.
        batch_size: Rows per batch.
        seed: Seed of everything random.
    """

    dataset: str | None = None
    dataset_config: str | None = None
    seq_len: int | None = None
    batch_size: int | None = None
    seed: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.seq_len is not None:
            check_seq_len(self.seq_len, "--seq_len")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"--batch_size {self.batch_size}: give at least 1.")


@dataclass
class EvalData(Rows):
    """The data checkpoints are measured on: the first train.py checkpoint's own training data config,
    with each field given here replacing it (a new source, files or a hub dataset, replaces the recorded one).

    Args:
        tokenizer: Eval tokenizer (default: the first .ckpt's training data config, as are the data fields).
        val_files: Local eval text files.
    """

    tokenizer: str | None = None
    val_files: Strings | None = None

    FIELDS = ("tokenizer", "val_files", "dataset", "dataset_config", "seq_len", "batch_size")
    """The fields that replace the recorded data config's."""

    def __post_init__(self):
        super().__post_init__()
        self.val_files = as_list(self.val_files)

    def given(self) -> dict:
        """The data config fields given, by name."""
        return {k: getattr(self, k) for k in self.FIELDS if getattr(self, k) is not None}


def at_least_one(**values: int) -> None:
    """Each count option (`--batches`, ...) is at least 1."""
    for flag, value in values.items():
        if value < 1:
            raise ConfigError(f"--{flag} {value}: give at least 1.")
