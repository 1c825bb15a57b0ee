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

from vscale.lazy import exports

__getattr__, __all__ = exports(
    __name__,
    {
        "module": ["PackedTextData"],
        "packing": [
            "LOCAL_FORMATS",
            "load_tokenizer",
            "local_format",
            "pack",
            "split_batch",
            "tokenize_documents",
            "tokenize_stream",
        ],
        "prepared": ["PreparedRows", "TokenFileWriter", "read_meta", "token_dtype", "write_prepared", "write_splits"],
        "rows": ["SOURCES"],
        "sampler": ["ResumableSampler"],
        "source": ["DataSource"],
        "streaming": ["StreamingRows"],
        "synthetic": ["BigramBackcopy", "StreamPositions", "SyntheticRows"],
    },
)
