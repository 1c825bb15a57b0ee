"""Tokenize a corpus once into flat token files that training memory-maps (`data.prepared`).

    python -m vscale.prepare --config configs/paper-0.1b.yaml --out data/c4-gpt2
    python -m vscale.prepare --tokenizer assets/tokenizer-tiny --files data/tiny/train.jsonl \\
        --val_files data/tiny/val.jsonl --out data/tiny-prepared

The source and tokenizer come from the config's `data:` section (tokenizer, dataset,
dataset_config, train_split, val_split, text_field, or train_files, val_files, val_fraction), or
from the flags, which override it (a flag source, --files or --dataset, replaces the config's
source). Documents are tokenized with `datasets.map` (batched, --num_proc processes) exactly as
training tokenizes them, and written split by split as train.bin and val.bin: each document's
tokens followed by <eos>, concatenated, uint16 when the vocabulary fits in 65536 ids, else
uint32; plus meta.json (tokenizer, vocabulary, eos id, dtype, counts, source). Any seq_len is
cut from these files at training time: rows are exactly those of packing the same documents.
Local files without --val_files hold out the same documents as training does (val_fraction,
seed 0). Hub datasets are downloaded whole, or with --max_documents / --val_documents only their
first documents are streamed.

The output is written to a hidden `.<name>.partial-<host>-<pid>` directory beside --out and renamed
to --out when complete: a killed prepare never leaves a directory that looks finished, and the next
prepare of that --out removes what a killed one left on this host. An --out that
already holds the same preparation is left as it is; one that holds anything else is refused.
Then train with `--data.prepared=<out>` (the paper configs set it).
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

import datasets

from vscale.console import OneLineParser, one_line_errors, quiet, read_config
from vscale.data.packing import load_tokenizer, tokenize_documents
from vscale.data.partial import abandoned_partials, partial_dir
from vscale.data.prepared import FORMAT, META, token_dtype, write_splits
from vscale.data.source import DataSource
from vscale.errors import PrepareRefused

WRITE_BATCH = 10_000  # documents per write: memory stays bounded by one batch
FLAGS = {"train_files": "--files", "val_files": "--val_files", "dataset": "--dataset"}


def differences(meta: dict, tokenizer: str, vocab_size: int, eos_id: int, dtype: str, source: dict) -> list[str]:
    """How an existing preparation differs from the one asked for (empty: the same)."""
    asked = {"format": FORMAT, "tokenizer": tokenizer, "vocab_size": vocab_size, "eos_id": eos_id, "dtype": dtype}
    asked |= {f"source.{k}": v for k, v in source.items()}
    found = {k: meta.get(k) for k in ("format", "tokenizer", "vocab_size", "eos_id", "dtype")}
    found |= {f"source.{k}": v for k, v in (meta.get("source") or {}).items()}
    return [
        f"{k} {found.get(k)!r} there, {asked.get(k)!r} asked"
        for k in sorted(asked.keys() | found.keys())
        if asked.get(k) != found.get(k)
    ]


def prepare(
    out: str,
    tokenizer: str,
    source: DataSource,
    *,
    max_documents: int | None = None,
    val_documents: int | None = None,
    num_proc: int = 1,
    progress: bool = True,
) -> dict:
    """Prepare `source` into `out` (see the module docstring); returns the meta, the existing one
    when `out` already holds this preparation. Raises PrepareRefused before any work when it cannot."""
    if not source.given:
        raise PrepareRefused(
            "no source: give --files (local .txt/.jsonl/.json/.parquet files) or --dataset (a hub dataset), "
            "or a --config whose data: section names one."
        )
    for n, flag in ((max_documents, "--max_documents"), (val_documents, "--val_documents"), (num_proc, "--num_proc")):
        if n is not None and n < 1:
            raise PrepareRefused(f"{flag} {n}: must be at least 1.")
    try:
        source.check_files(FLAGS)
        tok = load_tokenizer(tokenizer, "--tokenizer")
    except (FileNotFoundError, ValueError) as error:
        raise PrepareRefused(str(error)) from None
    record = source.record(max_documents, val_documents)
    existing = _existing(out, tokenizer, len(tok), tok.eos_token_id, token_dtype(len(tok)), record)
    if existing is not None:
        return existing
    with partial_dir(out) as tmp:  # everything from here on is written inside it; --out appears only when complete
        meta = _write(tmp, tok, tokenizer, source, record, max_documents, val_documents, num_proc, progress)
    counts = ", ".join(f"{s}: {m['documents']:,} documents, {m['tokens']:,} tokens" for s, m in meta["splits"].items())
    print(f"wrote {out} ({meta['dtype']}; {counts}); train on it with --data.prepared={out}")
    return meta


def _existing(out: str, tokenizer: str, vocab_size: int, eos_id: int, dtype: str, record: dict) -> dict | None:
    """The meta of `out` when it already holds this preparation; None when `out` does not exist yet.
    Anything else there is refused."""
    out_path = Path(out)
    if out_path.exists():
        meta = _json(out_path / META)
        differ = differences(meta, tokenizer, vocab_size, eos_id, dtype, record) if meta is not None else None
        if differ == []:
            print(
                f"{out} is already prepared from this source with tokenizer {tokenizer!r} "
                f"({meta['splits']['train']['tokens']:,} train tokens); nothing to do."
            )
            return meta
        what = (
            f"holds another preparation ({'; '.join(differ)})"
            if differ
            else "exists and is not a finished preparation (no meta.json)"
        )
        raise PrepareRefused(
            f"--out {out} {what}; choose another --out directory, or remove {out} to prepare it again."
        )
    abandoned, others = abandoned_partials(out)
    for stale in abandoned:
        shutil.rmtree(stale, ignore_errors=True)
        print(f"removed {stale}, left by a prepare on this host that no longer runs.", file=sys.stderr)
    for stale in others:
        print(
            f"note: {stale} belongs to a prepare that is running or ran on another host; "
            "remove it unless one is running.",
            file=sys.stderr,
        )
    return None


def _write(
    tmp: Path,
    tok,
    tokenizer: str,
    source: DataSource,
    record: dict,
    max_documents,
    val_documents,
    num_proc: int,
    progress: bool,
) -> dict:
    """Tokenize both splits with `datasets.map` and write them into `tmp`; the meta written."""
    dtype = token_dtype(len(tok))
    sequence = getattr(datasets, "List", datasets.Sequence)  # datasets >= 4 names it List
    features = datasets.Features({"ids": sequence(datasets.Value(dtype))})
    fields = {"tokenizer": tok, "text_field": source.text_field, "messages_field": None}
    train, val = source.documents(max_documents, val_documents, flags=FLAGS)
    tokens = {}
    for split, ds in (("train", train), ("val", val)):
        if source.text_field not in ds.column_names:
            raise PrepareRefused(
                f"--text_field {source.text_field!r}: the {split} data has no such "
                f"column (it has {ds.column_names}); name the column that holds the text."
            )
        tokens[split] = ds.map(
            tokenize_documents,
            fn_kwargs=fields,
            batched=True,
            num_proc=num_proc if num_proc > 1 else None,
            remove_columns=ds.column_names,
            features=features,
            desc=f"tokenize {split}",
        )
    batches = lambda ds: (table.column("ids") for table in ds.with_format("arrow").iter(batch_size=WRITE_BATCH))
    return write_splits(
        tmp,
        {split: batches(ds) for split, ds in tokens.items()},
        tokenizer=tokenizer,
        vocab_size=len(tok),
        eos_id=tok.eos_token_id,
        source=record,
        totals={split: len(ds) for split, ds in tokens.items()},
        progress=progress,
    )


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m vscale.prepare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--config",
        type=Path,
        help="train.py YAML config; its data: section gives the tokenizer and source (flags override it)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="directory to write (train.bin, val.bin, meta.json); the paper configs read data/c4-gpt2",
    )
    p.add_argument(
        "--tokenizer", help="Hugging Face tokenizer name or local directory (default: the config's data.tokenizer)"
    )
    p.add_argument(
        "--files",
        dest="train_files",
        nargs="+",
        metavar="FILE",
        help="local .txt/.jsonl/.json/.parquet training files; replaces the config's source",
    )
    p.add_argument(
        "--val_files",
        nargs="+",
        metavar="FILE",
        help="local validation files; without them, --val_fraction of the training documents is held out",
    )
    p.add_argument(
        "--val_fraction",
        type=float,
        help="fraction of documents held out when no --val_files are given, as in training (default 0.02)",
    )
    p.add_argument("--dataset", help="hub dataset name (e.g. allenai/c4); replaces the config's source")
    p.add_argument("--dataset_config", help="hub dataset configuration (e.g. en)")
    p.add_argument(
        "--train_split", "--split", dest="train_split", help="training split of the hub dataset (default train)"
    )
    p.add_argument("--val_split", help="validation split of the hub dataset (default validation)")
    p.add_argument("--text_field", help="column holding the text (default text)")
    p.add_argument(
        "--max_documents",
        type=int,
        help="take only the first N documents of the training split (hub: "
        "only those are streamed; local files: before the hold-out)",
    )
    p.add_argument("--val_documents", type=int, help="take only the first N documents of the validation split")
    p.add_argument(
        "--num_proc", type=int, default=1, help="processes tokenizing in parallel (datasets.map num_proc; default 1)"
    )
    return p


def resolve(args: argparse.Namespace) -> dict:
    """prepare()'s arguments: the config's data: section, the source's defaults, and the flags over both."""
    data = {}
    if args.config:
        if not args.config.is_file():
            raise PrepareRefused(f"--config {args.config}: no such file.")
        data = (read_config(args.config) or {}).get("data") or {}
    if data.get("messages_field"):
        raise PrepareRefused(
            f"{args.config}: data.messages_field={data['messages_field']!r}: chat data is not supported by "
            "prepare yet; train on it directly (it is tokenized in memory at setup)."
        )
    source = DataSource.of(data).replaced({field: getattr(args, field) for field in DataSource.names()})
    tokenizer = args.tokenizer or data.get("tokenizer")
    if not tokenizer:
        raise PrepareRefused("--tokenizer: give a tokenizer name or directory (or a --config with data.tokenizer).")
    return {
        "out": args.out,
        "tokenizer": tokenizer,
        "source": source,
        "max_documents": args.max_documents,
        "val_documents": args.val_documents,
        "num_proc": args.num_proc,
    }


def main(argv: list[str] | None = None) -> dict:
    quiet()
    args = parser().parse_args(argv)
    with one_line_errors():
        return prepare(**resolve(args))


if __name__ == "__main__":
    main()
