"""Where `PackedTextData`'s packed rows come from: one class per source behind one small interface,
`RowSource` (the rows, what the loaders read, the texts eval needs), picked once by
`pick_source`:

- `SyntheticSource`: rows of a synthetic task (Bigram-Backcopy) generated on demand, no tokenizer
  or file (synthetic.py);
- `PreparedSource`: token files written once by `python -m vscale.prepare`, memory-mapped (prepared.py);
- `FilesSource`: local .txt/.jsonl/.json/.parquet files, tokenized and packed in memory at setup;
- `HubSource`: a hub dataset downloaded whole (`streaming: false`, chat data), packed in memory;
- `StreamingSource`: a hub dataset streamed and packed on the fly (streaming.py).

Map-style rows (prepared, files, hub) are read in the order of `ResumableSampler`, a function of
(seed, sample position) that starts at the position implied by the trainer's global step: a resumed
run sees exactly the batches an uninterrupted run would have seen, without reading the rows before
it. Synthetic rows are themselves a function of (seed, sample position), read in position order from
the same start. Chat data (`messages_field`) is rendered with the chat template and packed like
text, with labels that keep the loss on the assistant's replies (and the `<eos>` after each
conversation) only; its batches are `[input_ids, labels]`.
"""

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import torch
from torch.utils.data import Dataset, Sampler, TensorDataset

from vscale.data.chat import set_chat_template
from vscale.data.packing import load_tokenizer, pack, tokenize_documents
from vscale.data.prepared import PreparedRows, check_prepared, read_documents, split_file
from vscale.data.sampler import ResumableSampler
from vscale.data.source import DataSource
from vscale.data.streaming import StreamingRows, Take, streaming_split
from vscale.data.synthetic import TRAIN_STREAM, VAL_STREAM, BigramBackcopy, StreamPositions, SyntheticRows
from vscale.errors import ConfigError, PreparedDataMissing


class RowSource(ABC):
    """The rows of one source: `train_data` and `val_data` once `setup` has built them (streamed rows have none),
    what this rank's loaders read, and raw validation texts. The defaults serve map-style rows in the order of
    `ResumableSampler`."""

    name: ClassVar[str]
    """The source's name, one of SOURCES (`PackedTextData.source`)."""
    workers: ClassVar[bool] = True
    """Whether DataLoader workers may read the rows (a stream is read in the main process)."""

    def __init__(
        self, seq_len: int, seed: int, val_rows: int | None, tokenizer=None, task: BigramBackcopy | None = None
    ):
        self.seq_len, self.seed, self.val_rows = seq_len, seed, val_rows
        self.tokenizer, self.task = tokenizer, task
        self.train_data: torch.Tensor | Dataset | None = None
        self.val_data: torch.Tensor | Dataset | None = None

    def setup(self) -> None:
        """Build or open `train_data` and `val_data`."""

    def train(self, start: int, rank: int, world: int) -> tuple[Dataset, Sampler | None]:
        """What this rank's training loader reads from global sample position `start` on, and in which order."""
        return self.train_data, ResumableSampler(len(self.train_data), self.seed, start, rank, world)

    def val(self, rank: int, world: int) -> Dataset:
        """What this rank's validation loader reads, in order."""
        return self.val_data

    @abstractmethod
    def texts(self, n: int) -> list[str]:
        """Up to n raw documents of the validation source (filler for needle retrieval)."""


class SyntheticSource(RowSource):
    """Training row p is a function of (seed, p); the validation rows depend on the task only, so every run of a
    study is validated alike."""

    name = "synthetic"

    def __init__(self, task: BigramBackcopy, seq_len: int, seed: int, val_rows: int | None):
        if val_rows is None or val_rows < 1:
            raise ConfigError(
                f"data.val_rows={val_rows}: synthetic validation rows are generated, so give how many (e.g. 256)."
            )
        super().__init__(seq_len, seed, val_rows, task=task)

    def setup(self) -> None:
        self.train_data = SyntheticRows(self.task, self.seq_len, self.seed, TRAIN_STREAM)
        self.val_data = SyntheticRows(self.task, self.seq_len, self.task.task_seed, VAL_STREAM, self.val_rows)

    def train(self, start: int, rank: int, world: int) -> tuple[Dataset, Sampler]:
        return self.train_data, StreamPositions(start, rank, world)

    def texts(self, n: int) -> list[str]:
        raise ConfigError(
            "data.synthetic: a synthetic task has no text for needle retrieval; "
            'skip it (eval.py run --needle_context_lens "[]").'
        )


class PreparedSource(RowSource):
    """Rows memory-mapped from a prepared directory, checked against the tokenizer and seq_len before any compute;
    `documents` is the source it was (or is to be) prepared from, named in the prepare command of an error."""

    name = "prepared"

    def __init__(
        self, directory: str, tokenizer: str, documents: DataSource, seq_len: int, seed: int, val_rows: int | None
    ):
        self.directory, self.documents, self.tokenizer_name = directory, documents, tokenizer
        if not (Path(directory) / "meta.json").is_file():
            what = (
                "has no meta.json (not prepared, or a prepare that did not finish)"
                if Path(directory).is_dir()
                else "does not exist"
            )
            hub = documents.dataset and not documents.train_files
            hint = " (a large hub dataset: add --max_documents N to stream only its first N documents)" if hub else ""
            raise PreparedDataMissing(
                f"data.prepared={directory!r} {what}; create it with: {self.prepare_command()}"
                f"{hint} (or train from the source itself with --data.prepared=null)."
            )
        super().__init__(seq_len, seed, val_rows, load_tokenizer(tokenizer))
        self.meta = check_prepared(directory, tokenizer, self.tokenizer, seq_len, self.prepare_command)

    def prepare_command(self, out: str | None = None) -> str:
        return self.documents.prepare_command(out or self.directory, self.tokenizer_name)

    def setup(self) -> None:
        dtype = self.meta["dtype"]
        self.train_data = PreparedRows(split_file(self.directory, "train"), dtype, self.seq_len)
        self.val_data = PreparedRows(split_file(self.directory, "val"), dtype, self.seq_len, limit=self.val_rows)

    def texts(self, n: int) -> list[str]:
        docs = read_documents(self.directory, "val", self.meta["dtype"], self.meta["eos_id"], n)
        return self.tokenizer.batch_decode([d.tolist() for d in docs])


class InMemorySource(RowSource):
    """Documents read whole, tokenized and packed in memory at setup; chat documents also give label rows."""

    def __init__(
        self,
        tokenizer: str,
        documents: DataSource,
        seq_len: int,
        seed: int,
        val_rows: int | None,
        messages_field: str | None,
        chat_template: str | None,
    ):
        super().__init__(seq_len, seed, val_rows, load_tokenizer(tokenizer))
        self.documents, self.messages_field = documents, messages_field
        self.train_labels: torch.Tensor | None = None
        self.val_labels: torch.Tensor | None = None
        if messages_field:
            set_chat_template(self.tokenizer, chat_template)

    def _pack(self, ds, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The first `limit` packed input rows, and label rows for chat data (packed alike, so they
        stay aligned)."""
        T, eos = self.seq_len, self.tokenizer.eos_token_id
        fields = {
            "tokenizer": self.tokenizer,
            "text_field": self.documents.text_field,
            "messages_field": self.messages_field,
        }
        tokens = ds.map(tokenize_documents, fn_kwargs=fields, batched=True, remove_columns=ds.column_names)
        rows = list(pack(iter(tokens["ids"]), eos, T))
        if not rows:
            raise ConfigError(f"data: fewer tokens than data.seq_len={T}; give more text or a shorter seq_len.")
        ids = torch.tensor(rows, dtype=torch.long)[:limit]
        if not self.messages_field:
            return ids, None
        return ids, torch.tensor(list(pack(iter(tokens["labels"]), eos, T)), dtype=torch.long)[:limit]

    def setup(self) -> None:
        train, val = self.documents.documents()
        self.train_data, self.train_labels = self._pack(train)
        self.val_data, self.val_labels = self._pack(val, self.val_rows)

    def train(self, start: int, rank: int, world: int) -> tuple[Dataset, Sampler]:
        rows, order = super().train(start, rank, world)
        return _labelled(rows, self.train_labels), order

    def val(self, rank: int, world: int) -> Dataset:
        return _labelled(self.val_data, self.val_labels)

    def texts(self, n: int) -> list[str]:
        return self.documents.texts(n)


def _labelled(ids: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | TensorDataset:
    return ids if labels is None else TensorDataset(ids, labels)


class FilesSource(InMemorySource):
    """Local files (`train_files`, `val_files`), packed in memory."""

    name = "files"


class HubSource(InMemorySource):
    """A hub dataset downloaded whole, packed in memory."""

    name = "hub"


class StreamingSource(RowSource):
    """A hub dataset streamed, shuffled through a buffer (training) and sharded by rank, packed on the fly: nothing
    is stored, so a resume re-reads the rows before its position."""

    name = "streaming"
    workers = False

    def __init__(
        self, tokenizer: str, documents: DataSource, seq_len: int, seed: int, val_rows: int | None, shuffle_buffer: int
    ):
        super().__init__(seq_len, seed, val_rows, load_tokenizer(tokenizer))
        self.documents, self.shuffle_buffer = documents, shuffle_buffer

    def _rows(
        self, split: str, rank: int, world: int, start: int = 0, shuffle_seed: int | None = None
    ) -> StreamingRows:
        d = self.documents
        ds = streaming_split(d.dataset, d.dataset_config, split, rank, world, shuffle_seed, self.shuffle_buffer)
        return StreamingRows(ds, self.tokenizer, self.seq_len, d.text_field, start=start)

    def train(self, start: int, rank: int, world: int) -> tuple[Dataset, None]:
        return self._rows(self.documents.train_split, rank, world, start // world, self.seed), None

    def val(self, rank: int, world: int) -> Dataset:
        n = None if self.val_rows is None else -(-self.val_rows // world)
        return Take(self._rows(self.documents.val_split, rank, world), n)

    def texts(self, n: int) -> list[str]:
        return self.documents.texts(n, streaming=True)


SOURCES = tuple(c.name for c in (PreparedSource, FilesSource, HubSource, StreamingSource, SyntheticSource))


def pick_source(fields: Mapping, task: BigramBackcopy | None) -> RowSource:
    """The source a data config (`PackedTextData`'s fields) names, its fields checked: the one place
    that picks it. A synthetic task comes alone; else prepared data takes precedence over the files
    or dataset it was made from, and local files over a hub dataset, streamed unless `streaming` is false."""
    f = fields
    if task:
        task.check()
        others = ("tokenizer", "prepared", "train_files", "val_files", "dataset", "messages_field")
        given = [f"data.{k}" for k in others if f[k]]
        if given:
            raise ConfigError(
                f"data.synthetic generates its rows: remove {', '.join(given)} (or remove data.synthetic to read text)."
            )
        return SyntheticSource(task, f["seq_len"], f["seed"], f["val_rows"])
    if not f["tokenizer"]:
        raise ConfigError(
            "data.tokenizer: give a tokenizer (a hub name or local directory), "
            "or data.synthetic for the synthetic task."
        )
    documents = DataSource.of(f)
    shared = {"seq_len": f["seq_len"], "seed": f["seed"], "val_rows": f["val_rows"]}
    if f["prepared"]:
        if f["messages_field"]:
            raise ConfigError(
                f"data.prepared={f['prepared']!r} with data.messages_field={f['messages_field']!r}: "
                "prepared data holds plain text only; set data.prepared=null to train on chat data."
            )
        return PreparedSource(f["prepared"], f["tokenizer"], documents, **shared)
    if not documents.given:
        raise ConfigError(
            "data: give data.prepared (a directory from python -m vscale.prepare), "
            "data.train_files (local files) or data.dataset (a hub dataset name)."
        )
    documents.check_files()
    chat = {"messages_field": f["messages_field"], "chat_template": f["chat_template"]}
    if f["train_files"]:
        return FilesSource(f["tokenizer"], documents, **shared, **chat)
    if not f["streaming"]:
        return HubSource(f["tokenizer"], documents, **shared, **chat)
    if f["messages_field"]:
        raise ConfigError("data.messages_field: chat data is read whole; set data.streaming=false.")
    return StreamingSource(f["tokenizer"], documents, **shared, shuffle_buffer=f["shuffle_buffer"])
