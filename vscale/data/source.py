"""Where documents come from: local files or a hub dataset's splits, and the column holding the
text. One `DataSource` is shared by training (`PackedTextData`), `python -m vscale.prepare` and the
eval commands, so all three read the same documents from the same fields."""

import dataclasses
import shlex
from dataclasses import dataclass
from itertools import islice

import datasets

from vscale.data.packing import local_format
from vscale.hub import from_hub

FLAGS = {"train_files": "data.train_files", "val_files": "data.val_files", "dataset": "data.dataset"}
"""How the fields that name files or a dataset are spelled in messages (train.py's config fields)."""


@dataclass(frozen=True)
class DataSource:
    """Documents from local .txt/.jsonl/.json/.parquet files (`train_files`, taking precedence) or a
    hub dataset (`dataset`); without `val_files`, `val_fraction` of the training documents is held out."""

    train_files: list[str] | None = None
    val_files: list[str] | None = None
    val_fraction: float = 0.02
    dataset: str | None = None
    dataset_config: str | None = None
    train_split: str = "train"
    val_split: str = "validation"
    text_field: str = "text"

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def of(cls, fields: dict) -> "DataSource":
        """The source named by the source fields of `fields` (a data config, hparams), None meaning the default."""
        return cls(**{k: fields[k] for k in cls.names() if fields.get(k) is not None})

    def replaced(self, given: dict) -> "DataSource":
        """This source with the non-None `given` fields over it. A new location (files or a
        dataset) replaces the old one whole, splits and hold-out included; `text_field` stays."""
        given = {k: v for k, v in given.items() if k in self.names() and v is not None}
        base = DataSource(text_field=self.text_field) if given.get("train_files") or given.get("dataset") else self
        return dataclasses.replace(base, **given)

    @property
    def given(self) -> bool:
        return bool(self.train_files or self.dataset)

    def check_files(self, flags: dict[str, str] = FLAGS) -> None:
        """Local files exist and share one format, checked before any compute."""
        for field in ("train_files", "val_files"):
            if getattr(self, field):
                local_format(getattr(self, field), flags[field])

    def documents(
        self, max_documents: int | None = None, val_documents: int | None = None, flags: dict[str, str] = FLAGS
    ):
        """(train, validation) `datasets.Dataset`s of whole documents. Without val_files, the
        held-out documents are a seeded fraction (`train_test_split(seed=0)`), the same on every call.
        `max_documents` / `val_documents` take the first documents of each split (before the
        hold-out, for local files); from a hub split only those are streamed, not the whole split
        downloaded (C4 en is ~305 GB)."""
        if self.train_files:
            train = datasets.load_dataset(
                local_format(self.train_files, flags["train_files"]), data_files=self.train_files, split="train"
            )
            if max_documents is not None:
                train = train.select(range(min(max_documents, len(train))))
            if self.val_files:
                val = datasets.load_dataset(
                    local_format(self.val_files, flags["val_files"]), data_files=self.val_files, split="train"
                )
            else:
                split = train.train_test_split(test_size=self.val_fraction, seed=0, shuffle=True)
                train, val = split["train"], split["test"]
            if val_documents is not None:
                val = val.select(range(min(val_documents, len(val))))
            return train, val
        return self._hub_split(self.train_split, max_documents, flags), self._hub_split(
            self.val_split, val_documents, flags
        )

    def texts(self, n: int, streaming: bool = False) -> list[str]:
        """Up to n raw texts for needle filler: the first of `val_files` (else `train_files`, hold-out
        included), or of the hub's validation split, streamed when `streaming`."""
        if self.train_files:
            files = self.val_files or self.train_files
            ds = datasets.load_dataset(local_format(files, FLAGS["val_files"]), data_files=files, split="train")
            return ds[:n][self.text_field]
        ds = from_hub(
            datasets.load_dataset,
            self.dataset,
            FLAGS["dataset"],
            self.dataset_config,
            split=self.val_split,
            streaming=streaming,
        )
        return [example[self.text_field] for example in islice(ds, n)]

    def _hub_split(self, split: str, n: int | None, flags: dict[str, str]):
        if n is None:
            return from_hub(datasets.load_dataset, self.dataset, flags["dataset"], self.dataset_config, split=split)
        stream = from_hub(
            datasets.load_dataset, self.dataset, flags["dataset"], self.dataset_config, split=split, streaming=True
        )
        return datasets.Dataset.from_generator(_documents, gen_kwargs={"stream": stream.take(n)})

    def record(self, max_documents: int | None = None, val_documents: int | None = None) -> dict:
        """What was read, as recorded in a prepared directory's meta.json (and compared when it exists): the fields that
        decide the tokens."""
        common = {"text_field": self.text_field, "max_documents": max_documents, "val_documents": val_documents}
        if self.train_files:
            return {
                "train_files": list(self.train_files),
                "val_files": list(self.val_files) if self.val_files else None,
                "val_fraction": None if self.val_files else self.val_fraction,
                **common,
            }
        return {
            "dataset": self.dataset,
            "dataset_config": self.dataset_config,
            "train_split": self.train_split,
            "val_split": self.val_split,
            **common,
        }

    def prepare_command(self, out: str, tokenizer: str) -> str:
        """The `python -m vscale.prepare` command line that prepares this source into `out` (defaults left out)."""
        default = DataSource()
        args = ["--tokenizer", tokenizer]
        if self.train_files:
            args += ["--files", *self.train_files]
            if self.val_files:
                args += ["--val_files", *self.val_files]
            elif self.val_fraction != default.val_fraction:
                args += ["--val_fraction", str(self.val_fraction)]
        elif self.dataset:
            args += ["--dataset", self.dataset]
            args += ["--dataset_config", self.dataset_config] if self.dataset_config else []
            args += ["--train_split", self.train_split] if self.train_split != default.train_split else []
            args += ["--val_split", self.val_split] if self.val_split != default.val_split else []
        else:
            return (
                f"python -m vscale.prepare --tokenizer {shlex.quote(tokenizer)} "
                f"--files <files> (or --dataset <name>) --out {shlex.quote(out)}"
            )
        args += ["--text_field", self.text_field] if self.text_field != default.text_field else []
        return " ".join(["python -m vscale.prepare", *map(shlex.quote, [*args, "--out", out])])


def _documents(stream):
    """`Dataset.from_generator` source: the documents of a streamed split, in order."""
    yield from stream
