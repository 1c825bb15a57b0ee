"""Prepared token data: corpora tokenized once (`python -m vscale.prepare`) and read during
training through `np.memmap`, so training tokenizes nothing and a resumed run reads only the
rows it trains on (starting at any position costs the same: one permutation of the row indices).

A prepared directory holds
  - `train.bin`, `val.bin`: every document's token ids, each document followed by `<eos>`,
    concatenated; flat little-endian `uint16` when the tokenizer's vocabulary fits in 65536
    ids, `uint32` otherwise. Row i of length T is tokens[i*T:(i+1)*T], exactly the i-th row
    `packing.pack` cuts from the same documents, for any T: the row length is chosen at
    training time, not at preparation;
  - `meta.json`: the format tag, the tokenizer (its name as given, vocabulary size and eos id),
    the dtype, each split's document and token counts, and the source it was read from.

The directory is written beside its destination under a hidden `.<name>.partial-<host>-<pid>` name and
renamed into place only once every file is complete and synced (partial.py): a directory with the final
name is always whole.
"""

import json
import os
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from vscale.data.partial import partial_dir
from vscale.errors import ConfigError, MissingInput

FORMAT = "vscale-prepared-tokens/1"
SPLITS = ("train", "val")
META = "meta.json"


def token_dtype(vocab_size: int) -> str:
    """The narrowest unsigned dtype that holds every id of a `vocab_size`-token vocabulary."""
    return "uint16" if vocab_size <= 2**16 else "uint32"


def _file_dtype(name: str) -> np.dtype:
    return np.dtype(name).newbyteorder("<")


def split_file(directory: str | Path, split: str) -> Path:
    return Path(directory) / f"{split}.bin"


def read_meta(directory: str | Path) -> dict:
    """meta.json of a prepared directory (FileNotFoundError when absent, ValueError for another format)."""
    path = Path(directory) / META
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise ConfigError(
            f"{path}: format {meta.get('format')!r} is not {FORMAT!r}; "
            "prepare the data again with python -m vscale.prepare."
        )
    return meta


def _flatten_with_eos(ids, eos_id: int, dtype: np.dtype) -> np.ndarray:
    """Documents (an arrow list array, chunked or not, or a list of token lists) as one array,
    each document followed by `eos_id`."""
    if isinstance(ids, list):
        ids = pa.array(ids, type=pa.list_(pa.int64()))
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    offsets = ids.offsets.to_numpy()
    offsets = offsets - offsets[0]
    values = ids.flatten().to_numpy(zero_copy_only=False)
    if values.size and (values.min() < 0 or values.max() > np.iinfo(dtype).max):
        raise ConfigError(f"token ids outside {dtype.name}: the tokenizer's vocabulary does not fit the file's dtype.")
    n = len(ids)
    out = np.empty(values.size + n, dtype=dtype)
    eos_at = offsets[1:] + np.arange(n)
    keep = np.ones(out.size, dtype=bool)
    keep[eos_at] = False
    out[keep] = values
    out[eos_at] = eos_id
    return out


class TokenFileWriter:
    """Appends batches of documents to one flat token file, so memory stays bounded by a batch."""

    def __init__(self, path: str | Path, dtype: str, eos_id: int):
        self.path, self.dtype, self.eos_id = Path(path), _file_dtype(dtype), eos_id
        self.documents = self.tokens = 0
        self._file = open(self.path, "wb")

    def add(self, ids) -> int:
        """Append documents (arrow list array or list of token lists), each followed by `<eos>`; returns how many."""
        flat = _flatten_with_eos(ids, self.eos_id, self.dtype)
        flat.tofile(self._file)
        n = len(ids)
        self.documents += n
        self.tokens += flat.size
        return n

    def close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_splits(
    directory: str | Path,
    splits: dict[str, Iterable],
    *,
    tokenizer: str,
    vocab_size: int,
    eos_id: int,
    source: dict,
    totals: dict[str, int] | None = None,
    progress: bool = True,
) -> dict:
    """Write the files of a prepared directory into `directory` (normally a `partial_dir`): for
    each split in SPLITS, its batches of documents (arrow list arrays or lists of token lists)
    into `<split>.bin`, then meta.json, each synced. `totals` (documents per split) sizes the
    progress bars over documents. Returns the meta."""
    directory, dtype = Path(directory), token_dtype(vocab_size)
    meta = {
        "format": FORMAT,
        "tokenizer": tokenizer,
        "vocab_size": vocab_size,
        "eos_id": eos_id,
        "dtype": dtype,
        "byteorder": "little",
        "splits": {},
        "source": source,
    }
    for split in SPLITS:
        total = (totals or {}).get(split)
        with (
            TokenFileWriter(split_file(directory, split), dtype, eos_id) as writer,
            tqdm(total=total, desc=f"write {split}.bin", unit="doc", disable=not progress) as bar,
        ):
            for batch in splits[split]:
                bar.update(writer.add(batch))
        meta["splits"][split] = {
            "file": split_file(directory, split).name,
            "documents": writer.documents,
            "tokens": writer.tokens,
        }
    meta["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    path = directory / META
    path.write_text(json.dumps(meta, indent=2) + "\n")
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    return meta


def write_prepared(out: str | Path, splits: dict[str, Iterable], **kwargs) -> dict:
    """`write_splits` into a partial directory renamed to `out` when complete."""
    with partial_dir(out) as tmp:
        meta = write_splits(tmp, splits, **kwargs)
    return meta


def split_tokens(directory: str | Path, split: str, dtype: str) -> int:
    """Tokens in a split's file, from its size."""
    return split_file(directory, split).stat().st_size // _file_dtype(dtype).itemsize


class PreparedRows(Dataset):
    """Row i = tokens[i*seq_len:(i+1)*seq_len] of a prepared split, as int64 (a map-style dataset
    for `ResumableSampler`). The memmap opens lazily in the process that reads, each DataLoader
    worker its own, and is never pickled: a pickled memmap would copy the whole array into
    every worker."""

    def __init__(self, path: str | Path, dtype: str, seq_len: int, limit: int | None = None):
        self.path, self.dtype, self.seq_len = str(path), _file_dtype(dtype), seq_len
        rows = (os.path.getsize(self.path) // self.dtype.itemsize) // seq_len
        self.rows = rows if limit is None else min(rows, limit)
        self._tokens: np.memmap | None = None

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, i: int) -> torch.Tensor:
        if not 0 <= i < self.rows:
            raise IndexError(f"row {i} of {self.rows}")
        if self._tokens is None:
            self._tokens = np.memmap(self.path, dtype=self.dtype, mode="r")
        T = self.seq_len
        return torch.from_numpy(self._tokens[i * T : (i + 1) * T].astype(np.int64))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tokens": None}


def read_documents(
    directory: str | Path, split: str, dtype: str, eos_id: int, n: int, chunk: int = 1 << 20
) -> list[np.ndarray]:
    """The first `n` documents of a prepared split (their tokens, without `<eos>`), read in chunks."""
    tokens = np.memmap(split_file(directory, split), dtype=_file_dtype(dtype), mode="r")
    docs, start, pos = [], 0, 0
    while len(docs) < n and pos < tokens.size:
        block = np.asarray(tokens[pos : pos + chunk])
        for end in np.flatnonzero(block == eos_id) + pos:
            docs.append(np.asarray(tokens[start:end]))
            start = end + 1
            if len(docs) == n:
                break
        pos += chunk
    return docs


def _same_tokenizer_name(recorded: str, given: str) -> bool:
    """The same name, or two spellings of one local directory."""
    if recorded == given:
        return True
    a, b = Path(recorded), Path(given)
    return a.exists() and b.exists() and a.resolve() == b.resolve()


def check_prepared(directory: str, tokenizer_name: str, tok, seq_len: int, command) -> dict:
    """The meta of `directory` (data.prepared), after checking its tokens were made with data.tokenizer
    (`tokenizer_name`, loaded as `tok`) and each split holds at least one row of `seq_len`; `command(out)`
    gives the prepare command that makes `out` from the configured source."""
    meta = read_meta(directory)
    recorded = (meta["tokenizer"], meta["vocab_size"], meta["eos_id"])
    if not _same_tokenizer_name(meta["tokenizer"], tokenizer_name) or recorded[1:] != (len(tok), tok.eos_token_id):
        other = f"{directory.rstrip('/')}-{Path(tokenizer_name).name}"
        raise ConfigError(
            f"data.prepared={directory!r} was prepared with tokenizer {recorded[0]!r} (vocabulary {recorded[1]}, eos "
            f"id {recorded[2]}) but data.tokenizer={tokenizer_name!r} has vocabulary {len(tok)}, eos id "
            f"{tok.eos_token_id}: set data.tokenizer={recorded[0]!r}, or prepare the data with this tokenizer into "
            f"another directory ({command(other)}) and set data.prepared={other}."
        )
    for split in SPLITS:
        if not split_file(directory, split).is_file():
            raise MissingInput(
                f"data.prepared={directory!r}: {split_file(directory, split)} is missing; prepare it again."
            )
        tokens = split_tokens(directory, split, meta["dtype"])
        if tokens != meta["splits"][split]["tokens"]:
            raise ConfigError(
                f"data.prepared={directory!r}: {split}.bin holds {tokens} tokens, meta.json says "
                f"{meta['splits'][split]['tokens']} (a truncated or replaced file); prepare it again."
            )
        if tokens < seq_len:
            raise ConfigError(
                f"data.prepared={directory!r}: its {split} split has {tokens} tokens, fewer than one row of "
                f"data.seq_len={seq_len}; "
                "prepare more documents (--max_documents / --val_documents) or lower data.seq_len."
            )
    return meta
