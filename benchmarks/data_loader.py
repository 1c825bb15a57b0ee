"""Data loading for training: prepared rows (`data.prepared`) against the streamed path.

    python benchmarks/data_loader.py

(a) Loader throughput, in tokens/s, of `PackedTextData`'s training loader over prepared rows,
    batch 32 x 1024 tokens (the paper-0.1b micro-batch), with 0 and 2 workers, over a synthetic
    prepared directory written by the package's own writer (uniform random ids of the shipped
    4096-token tokenizer, kept in --dir and reused when it is already there). The file was just
    written or read, so it is in the page cache. Compared with what paper-0.1b consumes:
    512 x 1024 tokens per optimizer step, at an assumed step rate (--steps_per_s; no GPU was
    measured).
(b) Time to the first batch of a resumed run, prepared rows, at sample 10^3 and 10^8 (the
    `ResumableSampler` start the trainer's global step implies), median of --repeats.
(c) Streaming (`StreamingRows`, the shipped tiny corpus streamed with `datasets` from its local
    file, the tiny tokenizer): how fast a resume re-reads the rows before its position, and what
    resuming at sample 10^8 and at paper-0.1b's step 10,000 would therefore cost (extrapolated).

Only ratios within this run are comparable across machines; absolute rates hold for this one.
"""

import argparse
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

TOKENIZER = "assets/tokenizer-tiny"
SEQ, BATCH = 1024, 32  # paper-0.1b: data.seq_len, data.batch_size
GLOBAL_BATCH = 512  # paper-0.1b: data.global_batch


def synthetic_prepared(directory: Path, tokens: int, vocab: int, eos_id: int, doc_len: int = 1023) -> Path:
    """A prepared directory of `tokens` uniform random ids in documents of `doc_len` (+ <eos>), via write_prepared."""
    import pyarrow as pa

    from vscale.data import read_meta, write_prepared

    source = {"synthetic": "uniform random ids", "seed": 0, "documents_of": doc_len, "tokens": tokens}
    if (directory / "meta.json").is_file() and read_meta(directory)["source"] == source:
        return directory
    rng = np.random.default_rng(0)
    docs_per_batch = 10_000

    def batches(n_docs):
        for start in range(0, n_docs, docs_per_batch):
            n = min(docs_per_batch, n_docs - start)
            values = rng.integers(1, vocab, size=n * doc_len, dtype=np.uint16)
            yield pa.ListArray.from_arrays(np.arange(0, (n + 1) * doc_len, doc_len, dtype=np.int32), values)

    n_train = tokens // (doc_len + 1)
    write_prepared(
        directory,
        {"train": batches(n_train), "val": batches(8)},
        tokenizer=TOKENIZER,
        vocab_size=vocab,
        eos_id=eos_id,
        source=source,
        totals={"train": n_train, "val": 8},
    )
    return directory


def data_module(prepared: Path, workers: int, start_sample: int = 0):
    """PackedTextData's training loader as the trainer would build it after `start_sample` samples (one device)."""
    from vscale.data import PackedTextData

    data = PackedTextData(TOKENIZER, seq_len=SEQ, batch_size=BATCH, prepared=str(prepared), num_workers=workers)
    data.setup("fit")
    data.trainer = SimpleNamespace(
        global_step=start_sample // BATCH, accumulate_grad_batches=1, world_size=1, global_rank=0
    )
    return data


def throughput(prepared: Path, workers: int, batches: int, repeats: int) -> float:
    """Median tokens/s over `repeats` passes of `batches` batches, after the first batch of each pass."""
    rates = []
    for r in range(repeats):
        loader = iter(data_module(prepared, workers, start_sample=r * batches * BATCH * 7).train_dataloader())
        next(loader)
        start = time.perf_counter()
        for _ in range(batches):
            batch = next(loader)
        rates.append(batches * batch.numel() / (time.perf_counter() - start))
        del loader
    return statistics.median(rates)


def first_batch(prepared: Path, workers: int, starts: tuple[int, ...], repeats: int) -> list[float]:
    """Median seconds, per start sample, from building the resumed run's loader to holding its
    first batch; the starts alternate within each repeat, so drift hits them alike."""
    times = {s: [] for s in starts}
    for r in range(repeats):
        for s in starts[::-1] if r % 2 else starts:
            data = data_module(prepared, workers, s)
            t = time.perf_counter()
            next(iter(data.train_dataloader()))
            times[s].append(time.perf_counter() - t)
    return [statistics.median(times[s]) for s in starts]


def streaming_reread(repeats: int) -> tuple[float, float, int]:
    """(rows/s, tokens/s, rows skipped) of a streamed resume re-reading the tiny corpus at seq_len 1024:
    the time to the first row after skipping all but one row, less the time to the first row unskipped."""
    import datasets

    from vscale.data import StreamingRows, load_tokenizer

    tokenizer = load_tokenizer(TOKENIZER)
    stream = datasets.load_dataset("json", data_files=["data/tiny/train.jsonl"], split="train", streaming=True)
    total = sum(1 for _ in StreamingRows(stream, tokenizer, SEQ, "text"))
    skip = total - 1

    def to_first_row(start: int) -> float:
        t = time.perf_counter()
        next(iter(StreamingRows(stream, tokenizer, SEQ, "text", start=start)))
        return time.perf_counter() - t

    rates = []
    for _ in range(repeats):
        base, skipped = to_first_row(0), to_first_row(skip)
        rates.append(skip / (skipped - base))
    rows_s = statistics.median(rates)
    return rows_s, rows_s * SEQ, skip


def hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds:,.0f} s"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("/tmp/vscale-bench-prepared"),
        help="synthetic prepared directory (made if absent)",
    )
    parser.add_argument("--tokens", type=int, default=300_000_000, help="tokens in the synthetic train.bin")
    parser.add_argument("--batches", type=int, default=300, help="batches timed per throughput pass")
    parser.add_argument("--repeats", type=int, default=5, help="passes / measurements per figure (median)")
    parser.add_argument(
        "--steps_per_s",
        type=float,
        default=2.5,
        help="assumed paper-0.1b optimizer steps/s on --gpus GPUs (not measured)",
    )
    parser.add_argument("--gpus", type=int, default=8, help="GPUs of the assumed paper-0.1b run, one loader each")
    args = parser.parse_args()

    from vscale.console import quiet
    from vscale.data import load_tokenizer, read_meta

    quiet()
    tok = load_tokenizer(TOKENIZER)
    prepared = synthetic_prepared(args.dir, args.tokens, len(tok), tok.eos_token_id)
    meta = read_meta(prepared)
    n_tokens = meta["splits"]["train"]["tokens"]

    need = GLOBAL_BATCH * SEQ * args.steps_per_s
    print(
        f"\nprepared: {prepared} ({n_tokens / 1e6:,.0f}M tokens, {meta['dtype']}, {n_tokens // SEQ:,} rows of {SEQ}); "
        f"batch {BATCH} x {SEQ}; median of {args.repeats}\n"
    )
    print(
        f"(a) loader throughput, prepared rows; paper-0.1b consumes {GLOBAL_BATCH} x {SEQ} tokens per optimizer step, "
        f"at an ASSUMED {args.steps_per_s} steps/s on {args.gpus} GPUs (no GPU measured): {need / 1e6:.2f}M tokens/s "
        f"in all, {need / args.gpus / 1e3:.0f}k tokens/s per GPU's loader\n"
    )
    print(
        "| num_workers | tokens/s | batches/s | x one GPU's need "
        "| x all 8 GPUs' need |\n| --- | --- | --- | --- | --- |"
    )
    for workers in (0, 2):
        rate = throughput(prepared, workers, args.batches, args.repeats)
        print(
            f"| {workers} | {rate / 1e6:.1f}M | {rate / (BATCH * SEQ):,.0f} "
            f"| {rate / (need / args.gpus):,.0f} | {rate / need:,.1f} |"
        )

    print(
        "\n(b) time to the first batch of a resumed run, "
        f"prepared rows (median of {4 * args.repeats}, starts alternated)\n"
    )
    print("| num_workers | resume at sample 10^3 | resume at sample 10^8 | ratio |\n| --- | --- | --- | --- |")
    for workers in (0, 2):
        near, far = first_batch(prepared, workers, (10**3, 10**8), 4 * args.repeats)
        print(f"| {workers} | {near * 1e3:.1f} ms | {far * 1e3:.1f} ms | {far / near:.2f} |")

    rows_s, tokens_s, skipped = streaming_reread(args.repeats)
    print(
        f"\n(c) streaming resume (StreamingRows, data/tiny/train.jsonl streamed from the local file, {TOKENIZER}, "
        f"seq_len {SEQ}): re-reading {skipped} rows, median of {args.repeats}\n"
    )
    print(
        "| re-read rate | rows/s | tokens/s |\n| --- | --- | --- "
        f"|\n| measured | {rows_s:,.0f} | {tokens_s / 1e6:.2f}M |\n"
    )
    print("| resume at | tokens re-read | time before the first batch (extrapolated) |\n| --- | --- | --- |")
    for label, samples in (
        ("sample 10^8", 10**8),
        ("paper-0.1b step 10,000 (5.12 x 10^6 samples)", 10_000 * GLOBAL_BATCH),
    ):
        print(f"| {label}, one loader | {samples * SEQ / 1e9:,.1f}B | {hours(samples / rows_s)} |")
        print(
            f"| {label}, {args.gpus} ranks in parallel | {samples * SEQ / args.gpus / 1e9:,.1f}B "
            f"per rank | {hours(samples / args.gpus / rows_s)} |"
        )


if __name__ == "__main__":
    main()
