"""Rows packed on the fly from a streamed hub split, for data too large to hold or prepare.

Nothing is stored, so the order cannot be indexed: a resumed run re-reads and re-tokenizes every
row before its position (in the main process). `python -m vscale.prepare` and `data.prepared`
avoid that cost.
"""

from collections.abc import Iterator
from itertools import islice

import datasets
import torch
from datasets.distributed import split_dataset_by_node
from torch.utils.data import IterableDataset

from vscale.data.packing import pack, tokenize_stream
from vscale.hub import from_hub


class StreamingRows(IterableDataset):
    """Rows packed on the fly from a streaming `datasets` split (C4-scale data).

    Resume skips `start` rows of this rank's shard by re-reading them: exact, and costs
    tokenization time proportional to the rows skipped.
    """

    def __init__(self, dataset, tokenizer, seq_len: int, text_field: str, start: int = 0):
        self.dataset, self.tokenizer, self.seq_len, self.text_field, self.start = (
            dataset,
            tokenizer,
            seq_len,
            text_field,
            start,
        )

    def __iter__(self) -> Iterator[torch.Tensor]:
        texts = (example[self.text_field] for example in self.dataset)
        rows = pack(tokenize_stream(texts, self.tokenizer), self.tokenizer.eos_token_id, self.seq_len)
        for row in islice(rows, self.start, None):
            yield torch.tensor(row)


class Take(IterableDataset):
    """The first `n` items of an iterable dataset (all of them when n is None)."""

    def __init__(self, dataset: IterableDataset, n: int | None):
        self.dataset, self.n = dataset, n

    def __iter__(self):
        return islice(self.dataset, self.n)


def streaming_split(
    dataset: str,
    dataset_config: str | None,
    split: str,
    rank: int,
    world: int,
    shuffle_seed: int | None = None,
    shuffle_buffer: int = 10_000,
):
    """This rank's shard of a streamed hub split, shuffled through a buffer when a seed is given."""
    ds = from_hub(datasets.load_dataset, dataset, "data.dataset", dataset_config, split=split, streaming=True)
    if shuffle_seed is not None:
        ds = ds.shuffle(seed=shuffle_seed, buffer_size=shuffle_buffer)
    return split_dataset_by_node(ds, rank=rank, world_size=world)
