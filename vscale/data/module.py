"""`PackedTextData`, the LightningDataModule: packed rows (docs/method.md §1) from the one source its
fields name (rows.py: synthetic, prepared, local files, a hub dataset whole or streamed), picked
and checked when it is built, served through loaders that start at the trainer's sample position.
"""

from dataclasses import asdict

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from vscale.cli_values import Strings, as_list
from vscale.data.rows import RowSource, pick_source
from vscale.data.synthetic import BigramBackcopy
from vscale.errors import ConfigError


class PackedTextData(L.LightningDataModule):
    """Packed-row language-modeling data: prepared token files, local files, a hub dataset, or a synthetic task.

    Args:
        tokenizer: Hugging Face tokenizer name or local directory (every source but `synthetic`, which has none).
        seq_len: Tokens per row (the context length).
        batch_size: Rows per micro-batch on each device.
        global_batch: Rows per optimizer step over all devices and nodes (the paper's 512).
            trainer.accumulate_grad_batches is derived from it as global_batch / (batch_size x devices x nodes), which
            must divide evenly; None keeps trainer.accumulate_grad_batches as given.
        prepared: A directory written by `python -m vscale.prepare` (train.bin, val.bin, meta.json: the source tokenized
            once, made with e.g. `python -m vscale.prepare --config <this config> --out <dir>`). When set, rows are
            memory-mapped from it (nothing is tokenized during training; a resume reads nothing before its position)
            and it takes precedence over train_files/dataset, which then only say what prepare reads. It must have been
            made with `tokenizer`; any seq_len can be cut from it. None: read the source fields below.
        train_files: Local .txt/.jsonl/.json/.parquet files; used instead of `dataset` when given.
        val_files: Local validation files; without them, `val_fraction` of the training documents is held out.
        dataset: Hub dataset name (e.g. allenai/c4), read with streaming when `streaming` is true.
        dataset_config: Hub dataset configuration (e.g. en).
        train_split: Split used for training.
        val_split: Split used for validation (hub datasets).
        text_field: Column holding the text.
        messages_field: Column holding chat conversations (lists of {role, content}); when set, rows are rendered with
            the chat template and the loss is taken on assistant replies only. Needs streaming false for hub datasets.
        chat_template: Jinja chat template (a file or a string) for tokenizers without one, e.g.
            assets/chat_template.jinja.
        streaming: Stream the hub dataset instead of downloading it.
        val_fraction: Fraction of documents held out when no validation files are given.
        val_rows: Validation rows used per evaluation (None: all).
        shuffle_buffer: Shuffle buffer (documents) for streaming data.
        num_workers: DataLoader workers (map-style data only: prepared, files, non-streamed hub data; streaming uses the
            main process).
        seed: Seed of the data order (and of the synthetic training rows); linked to `seed_everything` by the CLI.
        synthetic: Generate the rows of the Bigram-Backcopy task instead of reading text (`vscale.data.synthetic`; its
            fields, or a dict of them as saved in a checkpoint): training row p is a function of (seed, p), validation
            rows (`val_rows` of them) come from a separate stream that depends on the task only. Give no other source
            and no tokenizer with it. Every run logs the task's loss breakdown (train/loss_copy, ...).
    """

    def __init__(
        self,
        tokenizer: str | None = None,
        seq_len: int = 1024,
        batch_size: int = 8,
        global_batch: int | None = None,
        prepared: str | None = None,
        train_files: Strings | None = None,
        val_files: Strings | None = None,
        dataset: str | None = None,
        dataset_config: str | None = None,
        train_split: str = "train",
        val_split: str = "validation",
        text_field: str = "text",
        messages_field: str | None = None,
        chat_template: str | None = None,
        streaming: bool = True,
        val_fraction: float = 0.02,
        val_rows: int | None = 256,
        shuffle_buffer: int = 10_000,
        num_workers: int = 0,
        seed: int = 0,
        synthetic: BigramBackcopy | None = None,
    ):
        super().__init__()
        if seq_len < 2:
            raise ConfigError(f"data.seq_len={seq_len} must be at least 2 (one input and one target token).")
        if batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size} must be at least 1.")
        if global_batch is not None and (global_batch < 1 or global_batch % batch_size):
            raise ConfigError(
                f"data.global_batch={global_batch} must be a positive multiple of data.batch_size={batch_size}."
            )
        task = BigramBackcopy(**synthetic) if isinstance(synthetic, dict) else synthetic
        self.save_hyperparameters()
        self.hparams.synthetic = asdict(task) if task else None  # plain values: checkpoints load with weights_only
        self.hparams.train_files, self.hparams.val_files = (
            as_list(train_files),
            as_list(val_files),
        )  # one file: a list of one
        self.seq_len, self.batch_size = seq_len, batch_size  # checked, typed: what callbacks and the CLI read
        self.rows: RowSource = pick_source(self.hparams, task)
        self.tokenizer, self.task = self.rows.tokenizer, self.rows.task

    @property
    def source(self) -> str:
        """Where the rows come from, one of SOURCES."""
        return self.rows.name

    @property
    def train_data(self) -> torch.Tensor | Dataset | None:
        """The training rows once set up (None for streamed rows, packed as the loader reads them)."""
        return self.rows.train_data

    @property
    def val_data(self) -> torch.Tensor | Dataset | None:
        return self.rows.val_data

    def setup(self, stage: str) -> None:
        if self.rows.train_data is None:
            self.rows.setup()

    def validation_texts(self, n: int = 500) -> list[str]:
        """Up to n raw documents of the validation source (filler for needle retrieval)."""
        return self.rows.texts(n)

    # loaders

    def _position(self) -> tuple[int, int, int]:
        """(first sample this run must see, rank, world) from the trainer's restored step."""
        trainer = self.trainer
        if trainer is None:
            return 0, 0, 1
        per_step = self.batch_size * trainer.accumulate_grad_batches * trainer.world_size
        return trainer.global_step * per_step, trainer.global_rank, trainer.world_size

    def _loader(self, rows: Dataset, order: Sampler | None = None) -> DataLoader:
        """Loaders seed their workers from their own generator, not the global one, so creating
        a loader (after a resume, or for validation) leaves the training step's randomness alone."""
        workers = self.hparams.num_workers if self.rows.workers else 0
        return DataLoader(
            rows,
            batch_size=self.batch_size,
            sampler=order,
            num_workers=workers,
            generator=torch.Generator().manual_seed(self.hparams.seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(*self.rows.train(*self._position()))

    def val_dataloader(self) -> DataLoader:
        _, rank, world = self._position()
        return self._loader(self.rows.val(rank, world))
