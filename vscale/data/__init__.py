"""Language-modeling data: documents packed into rows of `seq_len` tokens (docs/method.md §1),
in an order that is a function of (seed, sample position).

One module per idea:
  - `packing`: tokenizers, local files, tokenize and pack (the row definition every source shares);
  - `sampler`: `ResumableSampler`, the resumable order of map-style rows;
  - `streaming`: `StreamingRows`, rows packed on the fly from a streamed hub split;
  - `prepared`: the on-disk token format of `python -m vscale.prepare`, its writer and memmap reader;
  - `synthetic`: the Bigram-Backcopy task, rows generated from (seed, position);
  - `module`: `PackedTextData`, the LightningDataModule, which picks the source of the rows.
"""

from vscale.data.module import SOURCES, PackedTextData
from vscale.data.packing import LOCAL_FORMATS, load_documents, load_tokenizer, local_format, pack, split_batch, tokenize_documents, tokenize_stream
from vscale.data.prepared import PreparedDataMissing, PreparedRows, TokenFileWriter, read_meta, token_dtype, write_prepared, write_splits
from vscale.data.sampler import ResumableSampler
from vscale.data.streaming import StreamingRows
from vscale.data.synthetic import BigramBackcopy, StreamPositions, SyntheticRows

__all__ = [
    "LOCAL_FORMATS", "SOURCES", "BigramBackcopy", "PackedTextData", "PreparedDataMissing", "PreparedRows", "ResumableSampler", "StreamPositions", "StreamingRows", "SyntheticRows", "TokenFileWriter",
    "load_documents", "load_tokenizer", "local_format", "pack", "read_meta", "split_batch", "token_dtype",
    "tokenize_documents", "tokenize_stream", "write_prepared", "write_splits",
]
