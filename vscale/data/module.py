"""`PackedTextData`, the LightningDataModule: packed rows (docs/method.md §1) from one of several
sources, chosen in one place (`PackedTextData.source`):

- `prepared`: token files written once by `python -m vscale.prepare`, memory-mapped (prepared.py);
- `files`: local .txt/.jsonl/.json/.parquet files, tokenized and packed in memory at setup;
- `hub`: a hub dataset downloaded whole (`streaming: false`, chat data), packed in memory;
- `streaming`: a hub dataset streamed and packed on the fly (streaming.py);
- `synthetic`: rows of a synthetic task (Bigram-Backcopy) generated on demand, no tokenizer or file (synthetic.py).

Map-style rows (all but streaming and synthetic) are read in the order of `ResumableSampler`, a
function of (seed, sample position) that starts at the position implied by the trainer's global
step: a resumed run sees exactly the batches an uninterrupted run would have seen, without reading
the rows before it. Synthetic rows are themselves a function of (seed, sample position), read in
position order from the same start. Chat data (`messages_field`) is rendered with the chat template and packed like
text, with labels that keep the loss on the assistant's replies (and the `<eos>` after each
conversation) only; its batches are `[input_ids, labels]`.
"""

from dataclasses import asdict
from itertools import islice
from pathlib import Path

import datasets
import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from vscale.cli_values import Strings, as_list
from vscale.data.chat import set_chat_template
from vscale.data.packing import load_tokenizer, local_format, pack, tokenize_documents
from vscale.data.prepared import PreparedRows, check_prepared, read_documents, split_file
from vscale.data.sampler import ResumableSampler
from vscale.data.source import DataSource
from vscale.data.streaming import StreamingRows, Take, streaming_split
from vscale.data.synthetic import TRAIN_STREAM, VAL_STREAM, BigramBackcopy, StreamPositions, SyntheticRows
from vscale.errors import ConfigError, PreparedDataMissing
from vscale.hub import from_hub

SOURCES = ("prepared", "files", "hub", "streaming", "synthetic")


class PackedTextData(L.LightningDataModule):
    """Packed-row language-modeling data: prepared token files, local files, a hub dataset, or a synthetic task.

    Args:
        tokenizer: Hugging Face tokenizer name or local directory (every source but `synthetic`, which has none).
        seq_len: Tokens per row (the context length).
        batch_size: Rows per micro-batch on each device.
        global_batch: Rows per optimizer step over all devices and nodes (the paper's 512). trainer.accumulate_grad_batches
            is derived from it as global_batch / (batch_size x devices x nodes), which must divide evenly; None keeps
            trainer.accumulate_grad_batches as given.
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
        chat_template: Jinja chat template (a file or a string) for tokenizers without one, e.g. assets/chat_template.jinja.
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
            raise ConfigError(f"data.global_batch={global_batch} must be a positive multiple of data.batch_size={batch_size}.")
        self.task = BigramBackcopy(**synthetic) if isinstance(synthetic, dict) else synthetic
        self.save_hyperparameters()
        self.hparams.synthetic = asdict(self.task) if self.task else None  # plain values: checkpoints load with weights_only
        self.hparams.train_files, self.hparams.val_files = as_list(train_files), as_list(val_files)  # one file: a list of one
        self.data_source = DataSource.of(self.hparams)
        self.tokenizer = None
        self.train_data: torch.Tensor | PreparedRows | SyntheticRows | None = None
        self.val_data: torch.Tensor | PreparedRows | SyntheticRows | None = None
        self.train_labels: torch.Tensor | None = None
        self.val_labels: torch.Tensor | None = None
        if self.task:
            self._check_synthetic()
            return
        if not tokenizer:
            raise ConfigError("data.tokenizer: give a tokenizer (a hub name or local directory), or data.synthetic for the synthetic task.")
        if prepared:
            self._check_prepared_exists()
        else:
            if not self.data_source.given:
                raise ConfigError("data: give data.prepared (a directory from python -m vscale.prepare), data.train_files (local files) or data.dataset (a hub dataset name).")
            self.data_source.check_files()
            if messages_field and dataset and not train_files and streaming:
                raise ConfigError("data.messages_field: chat data is read whole; set data.streaming=false.")
        self.tokenizer = load_tokenizer(tokenizer)
        if prepared:
            self.prepared_meta = check_prepared(prepared, tokenizer, self.tokenizer, seq_len, self._prepare_command)
        if messages_field:
            set_chat_template(self.tokenizer, chat_template)

    @property
    def source(self) -> str:
        """Where the rows come from, one of SOURCES: the one place that picks it."""
        hp = self.hparams
        if hp.synthetic:
            return "synthetic"
        if hp.prepared:
            return "prepared"
        if hp.train_files:
            return "files"
        return "streaming" if hp.streaming else "hub"

    def _check_synthetic(self) -> None:
        """A synthetic task is the only source, with a finite validation set."""
        hp = self.hparams
        self.task.check()
        given = [f"data.{f}" for f in ("tokenizer", "prepared", "train_files", "val_files", "dataset", "messages_field") if hp[f]]
        if given:
            raise ConfigError(f"data.synthetic generates its rows: remove {', '.join(given)} (or remove data.synthetic to read text).")
        if hp.val_rows is None or hp.val_rows < 1:
            raise ConfigError(f"data.val_rows={hp.val_rows}: synthetic validation rows are generated, so give how many (e.g. 256).")

    # prepared data: checks before any compute

    def _prepare_command(self, out: str | None = None) -> str:
        return self.data_source.prepare_command(out or self.hparams.prepared, self.hparams.tokenizer)

    def _check_prepared_exists(self) -> None:
        hp = self.hparams
        if hp.messages_field:
            raise ConfigError(f"data.prepared={hp.prepared!r} with data.messages_field={hp.messages_field!r}: prepared data holds "
                             "plain text only; set data.prepared=null to train on chat data.")
        if not (Path(hp.prepared) / "meta.json").is_file():
            what = "has no meta.json (not prepared, or a prepare that did not finish)" if Path(hp.prepared).is_dir() else "does not exist"
            hint = " (a large hub dataset: add --max_documents N to stream only its first N documents)" if hp.dataset and not hp.train_files else ""
            raise PreparedDataMissing(f"data.prepared={hp.prepared!r} {what}; create it with: {self._prepare_command()}{hint} "
                                    "(or train from the source itself with --data.prepared=null).")

    # rows

    def _rows(self, ds, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The first `limit` packed input rows, and label rows for chat data (packed alike, so
        they stay aligned)."""
        T, eos = self.hparams.seq_len, self.tokenizer.eos_token_id
        fields = {"tokenizer": self.tokenizer, "text_field": self.hparams.text_field, "messages_field": self.hparams.messages_field}
        tokens = ds.map(tokenize_documents, fn_kwargs=fields, batched=True, remove_columns=ds.column_names)
        rows = list(pack(iter(tokens["ids"]), eos, T))
        if not rows:
            raise ConfigError(f"data: fewer tokens than data.seq_len={T}; give more text or a shorter seq_len.")
        ids = torch.tensor(rows, dtype=torch.long)[:limit]
        if not self.hparams.messages_field:
            return ids, None
        return ids, torch.tensor(list(pack(iter(tokens["labels"]), eos, T)), dtype=torch.long)[:limit]

    def _dataset(self, ids, labels: torch.Tensor | None):
        return ids if labels is None else TensorDataset(ids, labels)

    def setup(self, stage: str) -> None:
        hp, source = self.hparams, self.source
        if self.train_data is not None or source == "streaming":  # streamed rows are packed on the fly by the loaders
            return
        if source == "synthetic":  # validation rows depend on the task only: every run of a study is validated alike
            self.train_data = SyntheticRows(self.task, hp.seq_len, hp.seed, TRAIN_STREAM)
            self.val_data = SyntheticRows(self.task, hp.seq_len, self.task.task_seed, VAL_STREAM, hp.val_rows)
            return
        if source == "prepared":
            dtype = self.prepared_meta["dtype"]
            self.train_data = PreparedRows(split_file(hp.prepared, "train"), dtype, hp.seq_len)
            self.val_data = PreparedRows(split_file(hp.prepared, "val"), dtype, hp.seq_len, limit=hp.val_rows)
            return
        train, val = self.data_source.documents()
        self.train_data, self.train_labels = self._rows(train)
        self.val_data, self.val_labels = self._rows(val, hp.val_rows)

    def validation_texts(self, n: int = 500) -> list[str]:
        """Up to n raw documents of the validation source (filler for needle retrieval)."""
        hp = self.hparams
        if self.source == "synthetic":
            raise ConfigError('data.synthetic: a synthetic task has no text for needle retrieval; skip it (eval.py run --needle_context_lens "[]").')
        if self.source == "prepared":
            meta = self.prepared_meta
            docs = read_documents(hp.prepared, "val", meta["dtype"], meta["eos_id"], n)
            return self.tokenizer.batch_decode([d.tolist() for d in docs])
        if hp.train_files:
            files = hp.val_files or hp.train_files
            ds = datasets.load_dataset(local_format(files, "data.val_files"), data_files=files, split="train")
            return ds[: n][hp.text_field]
        ds = from_hub(datasets.load_dataset, hp.dataset, "data.dataset", hp.dataset_config, split=hp.val_split, streaming=hp.streaming)
        return [example[hp.text_field] for example in islice(ds, n)]

    # loaders

    def _position(self) -> tuple[int, int, int]:
        """(first sample this run must see, rank, world) from the trainer's restored step."""
        trainer = self.trainer
        if trainer is None:
            return 0, 0, 1
        per_step = self.hparams.batch_size * trainer.accumulate_grad_batches * trainer.world_size
        return trainer.global_step * per_step, trainer.global_rank, trainer.world_size

    def _generator(self) -> torch.Generator:
        """Loaders seed their workers from their own generator, not the global one, so creating
        a loader (after a resume, or for validation) leaves the training step's randomness alone."""
        return torch.Generator().manual_seed(self.hparams.seed)

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        start, rank, world = self._position()
        if self.source == "streaming":
            ds = streaming_split(hp.dataset, hp.dataset_config, hp.train_split, rank, world, hp.seed, hp.shuffle_buffer)
            rows = StreamingRows(ds, self.tokenizer, hp.seq_len, hp.text_field, start=start // world)
            return DataLoader(rows, batch_size=hp.batch_size, generator=self._generator())
        if self.source == "synthetic":
            sampler = StreamPositions(start, rank, world)
        else:
            sampler = ResumableSampler(len(self.train_data), hp.seed, start, rank, world)
        return DataLoader(self._dataset(self.train_data, self.train_labels), batch_size=hp.batch_size, sampler=sampler,
                          num_workers=hp.num_workers, generator=self._generator())

    def val_dataloader(self) -> DataLoader:
        hp = self.hparams
        if self.source == "streaming":
            _, rank, world = self._position()
            ds = streaming_split(hp.dataset, hp.dataset_config, hp.val_split, rank, world)
            rows = StreamingRows(ds, self.tokenizer, hp.seq_len, hp.text_field)
            n = None if hp.val_rows is None else -(-hp.val_rows // world)
            return DataLoader(Take(rows, n), batch_size=hp.batch_size, generator=self._generator())
        return DataLoader(self._dataset(self.val_data, self.val_labels), batch_size=hp.batch_size, num_workers=hp.num_workers,
                          generator=self._generator())
