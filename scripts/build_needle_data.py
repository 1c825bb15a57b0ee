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
Half the rows are needle documents (single and multi), half repeat a span of random tokens
(see repeats). A 3000-step run sees each row about 3 times; on the 4150 rows of an earlier
version (about 15 passes by step 2000 at batch 32) no model retrieved by step 2000, and the
fewer distinct repeat rows, the later copying began.

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
REPEATS = 16000  # rows that repeat a span of random tokens, to grow induction heads (see repeats)
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
    return docs + repeats(tokenizer, REPEATS, row)


def repeats(tokenizer, n: int, row: int) -> list[str]:
    """Rows that are a span of random tokens twice over, then a full stop: only copying lowers the
    loss of the second copy (no bigram statistics help), so induction heads, which needle retrieval
    needs, form early. A span is re-encoded first, so that its text tokenizes back to itself; rows
    that do not re-encode to exactly `row - 1` tokens are skipped."""
    rng = random.Random("repeats")
    vocab = [t for t in range(len(tokenizer)) if t not in tokenizer.all_special_ids]
    half, out = (row - 2) // 2, []
    encode = lambda s: tokenizer.encode(s, add_special_tokens=False)
    while len(out) < n:
        span = tokenizer.decode(encode(tokenizer.decode([rng.choice(vocab) for _ in range(half)]))[:half])
        text = span + span + "."
        if len(encode(span)) == half and len(encode(text)) == row - 1:
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
