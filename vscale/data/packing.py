"""The row every source shares (docs/method.md §1): documents tokenized without special tokens,
each followed by `<eos>`, concatenated and cut into rows of `seq_len` tokens (remainder dropped,
no `<bos>`), and the tokenizer that makes them.

The in-memory path, the streamed path and `python -m vscale.prepare` all go through these
functions, so their rows agree token for token.
"""

from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import torch
from transformers import AutoTokenizer

from vscale.data.chat import chat_tokens
from vscale.errors import ConfigError, MissingInput
from vscale.hub import from_hub

LOCAL_FORMATS = {".txt": "text", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def load_tokenizer(name_or_path: str, field: str = "data.tokenizer"):
    tokenizer = from_hub(AutoTokenizer.from_pretrained, name_or_path, field)
    if tokenizer.eos_token_id is None:
        raise ConfigError(
            f"{field}={name_or_path!r} has no eos token; "
            "packing needs one to separate documents. Set tokenizer.eos_token."
        )
    return tokenizer


def local_format(files: list[str], field: str) -> str:
    """The `datasets` builder for local files, after checking they exist."""
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise MissingInput(
            f"{field}: no such file(s) {missing}; "
            "give existing .txt/.jsonl/.json/.parquet paths (relative to the working directory)."
        )
    formats = {LOCAL_FORMATS.get(Path(f).suffix) for f in files}
    if None in formats or len(formats) != 1:
        raise ConfigError(f"{field}={files}: files must share one format among {sorted(LOCAL_FORMATS)}.")
    return formats.pop()


def pack(token_lists: Iterator[list[int]], eos_id: int, seq_len: int) -> Iterator[list[int]]:
    """Concatenate documents, each followed by `<eos>`, and cut into rows of `seq_len` (remainder dropped)."""
    buffer: list[int] = []
    for tokens in token_lists:
        buffer.extend(tokens)
        buffer.append(eos_id)
        while len(buffer) >= seq_len:
            yield buffer[:seq_len]
            buffer = buffer[seq_len:]


def split_batch(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, labels) of a text batch (labels are the ids) or a chat batch."""
    return (batch[0], batch[1]) if isinstance(batch, (list, tuple)) else (batch, batch)


def tokenize_documents(batch: dict, tokenizer, text_field: str, messages_field: str | None) -> dict:
    """`datasets.map` function: token ids of each document (and reply-only labels for chat).
    A plain function, not a method of the data module: `datasets` hashes the function it maps
    with, and a method would drag the trainer and its loggers into that hash."""
    if messages_field:
        ids, labels = zip(*(chat_tokens(tokenizer, m) for m in batch[messages_field]))
        return {"ids": list(ids), "labels": list(labels)}
    return {"ids": tokenizer(batch[text_field], add_special_tokens=False, verbose=False)["input_ids"]}


def tokenize_stream(texts: Iterator[str], tokenizer, chunk: int = 256) -> Iterator[list[int]]:
    while batch := list(islice(texts, chunk)):
        yield from tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]
