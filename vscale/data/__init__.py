"""Language-modeling data: documents packed into rows of `seq_len` tokens (docs/method.md §1),
in an order that is a function of (seed, sample position).

One module per idea:
  - `source`: `DataSource`, where documents come from (local files or a hub dataset), shared with prepare and eval;
  - `packing`: tokenizers, local file formats, tokenize and pack (the row definition every source shares);
  - `chat`: conversations to tokens and reply-only labels;
  - `sampler`: `ResumableSampler`, the resumable order of map-style rows;
  - `streaming`: `StreamingRows`, rows packed on the fly from a streamed hub split;
  - `prepared`: the on-disk token format of `python -m vscale.prepare`, its writer and memmap reader;
  - `prepare`: `python -m vscale.prepare`, which writes it;
  - `synthetic`: the Bigram-Backcopy task, rows generated from (seed, position);
  - `rows`: one `RowSource` per source of rows (synthetic, prepared, files, hub, streaming), picked once by
    `pick_source`;
  - `module`: `PackedTextData`, the LightningDataModule, which composes the picked source with resumable loaders.
"""

from vscale.data.module import PackedTextData
from vscale.data.packing import (
    LOCAL_FORMATS,
    load_tokenizer,
    local_format,
    pack,
    split_batch,
    tokenize_documents,
    tokenize_stream,
)
from vscale.data.prepared import PreparedRows, TokenFileWriter, read_meta, token_dtype, write_prepared, write_splits
from vscale.data.rows import SOURCES
from vscale.data.sampler import ResumableSampler
from vscale.data.source import DataSource
from vscale.data.streaming import StreamingRows
from vscale.data.synthetic import BigramBackcopy, StreamPositions, SyntheticRows

__all__ = [
    "LOCAL_FORMATS",
    "SOURCES",
    "BigramBackcopy",
    "DataSource",
    "PackedTextData",
    "PreparedRows",
    "ResumableSampler",
    "StreamPositions",
    "StreamingRows",
    "SyntheticRows",
    "TokenFileWriter",
    "load_tokenizer",
    "local_format",
    "pack",
    "read_meta",
    "split_batch",
    "token_dtype",
    "tokenize_documents",
    "tokenize_stream",
    "write_prepared",
    "write_splits",
]
