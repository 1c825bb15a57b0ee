"""Build data/needle/train.parquet: needle-in-a-haystack documents that teach a tiny model to retrieve.

Why this exists: a needle measurement that reads 0 for every checkpoint cannot tell a model that
does not retrieve from a broken pipeline. configs/needle-tiny.yaml trains on these documents, so
that a model trained on a laptop in minutes answers the questions of `eval.py run`'s needle
protocol and its accuracies (full precision and W8A8) say something.

Each document is one needle case of vscale/eval/needle.py (the same templates, kinds and value
shapes) built from the *training* text, with the answer and a full stop appended: filler, the
needle(s) at sentence boundaries, the question, the value. The cases' seed is negative, so
no training case shares its (seed, index) draw with an evaluation case (seeds >= 0), and the
filler comes from data/tiny/train.jsonl while evaluation fills from data/tiny/val.jsonl.
Each document is one training row, so its needle and its question are always seen together.
Half the rows are needle documents (single and multi), half are copy rows (see repeats), which
teach copying by content: "find the earlier occurrence, copy what followed". A 5000-step run sees
each row about 5 times; on the 4150 rows of an earlier version (about 15 passes by step 2000 at
batch 32) no model retrieved by step 2000, and the fewer distinct repeat rows, the later copying
began.

Deterministic: re-running gives byte-identical output. tests/test_needle_checkpoint.py checks that every
document packs into one row of its own.

Rebuild:  python scripts/build_needle_data.py
"""

import argparse
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vscale.data.packing import load_tokenizer
from vscale.eval.needle import make_cases

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = "assets/tokenizer-tiny"
SOURCE = "data/tiny/train.jsonl"
OUT = "data/needle/train.parquet"
ROW = 128  # configs/needle-tiny.yaml's data.seq_len
CASES = {"single": 12000, "multi": 4000}  # needle documents, one training row each
REPEATS = 16000  # copy rows, to grow induction heads (see repeats)
COPY_ROWS = (
    "random",
    "random",
    "random",
    "random",
    "text",
    "recurrence",
)  # the kinds of copy rows, in turn (see repeats)
HELD_OUT = (20, 37, 50)  # distances no copy row repeats at: tests/test_needle_copying.py copies at them
SHORTEST = "10000"  # a value of the fewest tokens, which prompts are drawn for


def fitted(tokenizer, case, row: int) -> str | None:
    """The case as a document of `row - 1` tokens (packing appends eos): prompt, answer, full stop,
    with filler trimmed from the front when the answer takes more tokens than the longest one
    allowed for; None when re-encoding will not land on the length (decoding and re-encoding can
    merge tokens where filler meets a needle) or a trim would cut a needle."""
    ids = case.prompt_ids
    for _ in range(3):
        text = tokenizer.decode(ids) + f" {case.answer}."
        excess = len(tokenizer.encode(text, add_special_tokens=False)) - (row - 1)
        if excess <= 0:
            break
        ids = ids[excess:]
    needles = 4 if case.kind == "multi" else 1
    whole = text.count(case.answer) == 2 and text.count("The special magic") == needles + 1
    return text if excess == 0 and whole else None


def documents(tokenizer, texts: list[str], cases: dict[str, int] = CASES, row: int = ROW) -> list[str]:
    """Documents of exactly `row` tokens with the eos that packing appends: row i of the packed
    stream is document i, so no needle is ever cut from its question. Prompts are drawn for the
    shortest answer (a 5-digit number can take 3 tokens) and trimmed to fit; eos inside the filler
    stays as its token text."""
    docs = []
    shortest = len(tokenizer.encode(f" {SHORTEST}.", add_special_tokens=False))
    for kind, n in cases.items():
        drawn = make_cases(texts, tokenizer, row - 1 - shortest, 2 * n, seed=-1, kind=kind)
        fits = [text for c in drawn if (text := fitted(tokenizer, c, row)) is not None]
        if len(fits) < n:
            raise SystemExit(f"only {len(fits)} of {2 * n} {kind} documents fit {row} tokens; lower CASES[{kind!r}].")
        docs += fits[:n]
    return docs + repeats(tokenizer, REPEATS, row, texts)


def periods() -> list[int]:
    """The periods copy rows tile their spans at: every one from 4 to 63 tokens but HELD_OUT."""
    return [p for p in range(4, 64) if p not in HELD_OUT]


def repeats(tokenizer, n: int, row: int, texts: list[str]) -> list[str]:
    """Copy rows of `row - 1` tokens ending in a full stop, of the kinds of COPY_ROWS in turn: `random`, a
    span of random tokens tiled to the row's end at a period from periods(); `text`, the same with a
    span of training text; `recurrence`, training text in which one span (random tokens or text, 4-40
    tokens) recurs after a gap that is not HELD_OUT. Periods and gaps vary, so that no positional rule
    ("copy the token 63 back", which one period taught an earlier version) lowers the loss; random
    spans, which no bigram statistics predict, grow copying early; spans in text make it work in text,
    as a needle's value sits in filler (a model trained on random rows alone copies only in random
    context, and does not retrieve). Rows whose text does not re-encode to their tokens are skipped."""
    rng = random.Random("repeats")
    vocab = [t for t in range(len(tokenizer)) if t not in tokenizer.all_special_ids]
    stream = [t for ids in tokenizer(texts[:4000], add_special_tokens=False)["input_ids"] for t in ids]
    encode = lambda s: tokenizer.encode(s, add_special_tokens=False)
    text_span = lambda length: stream[(i := rng.randrange(len(stream) - length)) : i + length]
    random_span = lambda length: [rng.choice(vocab) for _ in range(length)]
    out, choices, body = [], periods(), row - 2
    while len(out) < n:
        kind = COPY_ROWS[len(out) % len(COPY_ROWS)]
        if kind in ("random", "text"):
            period = rng.choice(choices)
            span = random_span(period) if kind == "random" else text_span(period)
            ids = [span[i % period] for i in range(body)]
        else:
            length = rng.randint(4, 40)
            span = random_span(length) if rng.random() < 0.5 else text_span(length)
            gap = rng.randint(length, body - length)  # from the span's start to its copy's
            while gap in HELD_OUT:
                gap = rng.randint(length, body - length)
            ids = text_span(body)
            start = rng.randrange(body - gap - length + 1)
            ids[start : start + length] = span
            ids[start + gap : start + gap + length] = span
        text = tokenizer.decode(ids) + "."
        if encode(text)[:-1] == ids and len(encode(text)) == row - 1:
            out.append(text)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=OUT, help=f"where to write the documents (default: {OUT})")
    args = p.parse_args(argv)
    texts = [json.loads(line)["text"] for line in (ROOT / SOURCE).read_text().splitlines()]
    docs = documents(load_tokenizer(str(ROOT / TOKENIZER)), texts)
    out = ROOT / args.out  # an absolute --out stays itself
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"text": docs}), out, compression="gzip")  # 4.3 MB for 16 MB of text
    print(f"{len(docs)} documents -> {out}")


if __name__ == "__main__":
    main()
