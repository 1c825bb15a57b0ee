"""
Build the offline training data and tokenizer for the tiny default config.

Why this exists: the tiny config must train end to end on a fresh machine with
no network access (no Hugging Face hub, no dataset downloads). So we make a
small English-prose corpus out of text that every Python install already has,
the docstrings of the standard library plus the language-reference topics that
ship in the stdlib for `help()` (pydoc_data/topics.py), train a 4096-token
byte-level BPE tokenizer on it, and commit both to the repo:

    data/tiny/train.jsonl, data/tiny/val.jsonl   one {"text": ...} per line
    assets/tokenizer-tiny/                       PreTrainedTokenizerFast files

The stdlib files are parsed with `ast`, never imported. Each docstring (and
each reference topic) is one document. Everything is sorted and
deterministic, so re-running on the same Python version gives byte-identical
outputs. (A different Python version has different docstrings and thus gives a
different corpus; the committed files are the reference.)

Rebuild:  python scripts/build_tiny_assets.py
"""

import ast
import inspect
import itertools
import json
import os
import re

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

# -----------------------------------------------------------------------------
stdlib_dir = os.path.dirname(os.__file__)
skip_dirs = {
    "test",
    "tests",
    "idlelib",
    "lib2to3",
    "site-packages",
    "dist-packages",
    "__pycache__",
    "turtledemo",
    "ensurepip",
    "pydoc_data",
}
min_chars = 200  # keep docstrings with at least this many characters
min_prose_frac = 0.8  # fraction of letters/whitespace/basic punctuation required
val_every = 20  # every 20th document goes to validation
max_train_chars = 3_000_000  # cap on train text
vocab_size = 4096
eot = "<|endoftext|>"
repo_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
data_dir = os.path.join(repo_dir, "data", "tiny")
tok_dir = os.path.join(repo_dir, "assets", "tokenizer-tiny")
# -----------------------------------------------------------------------------


def stdlib_files():
    """All .py files under the stdlib directory, in sorted (deterministic) order."""
    for root, dirs, files in os.walk(stdlib_dir):
        dirs[:] = sorted(d for d in dirs if d not in skip_dirs and not d.startswith("config-"))
        for f in sorted(files):
            if f.endswith(".py"):
                yield os.path.join(root, f)


def strip_doctests(text):
    """Drop doctest blocks: a '>>>' line and everything after it up to a blank line."""
    out, in_doctest = [], False
    for line in text.split("\n"):
        s = line.strip()
        if s.startswith(">>>"):
            in_doctest = True
        elif not s:
            in_doctest = False
        if not in_doctest:
            out.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def is_prose(text):
    """Reject docstrings that are mostly code, tables or symbols."""
    if not text:
        return False
    prose = sum(c.isalpha() or c.isspace() or c in ".,;:'\"()-" for c in text)
    return prose / len(text) >= min_prose_frac


def docstrings(path):
    """Module, class and function docstrings of one source file, in source order."""
    with open(path, "rb") as f:
        src = f.read()
    try:
        tree = ast.parse(src, filename=path)
    except (SyntaxError, ValueError):
        return
    nodes = [
        n for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    nodes.sort(key=lambda n: getattr(n, "lineno", 0))  # ast.walk is BFS; use source order
    for node in nodes:
        doc = ast.get_docstring(node, clean=False)
        if doc:
            yield strip_doctests(inspect.cleandoc(doc))


def reference_topics():
    """The Python language reference pages that pydoc's help() shows, in file order."""
    path = os.path.join(stdlib_dir, "pydoc_data", "topics.py")
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        tree = ast.parse(f.read(), filename=path)
    topics = next(
        ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "topics"
    )
    return [strip_doctests(t.strip()) for t in topics.values()]


def build_corpus():
    docs, seen = [], set()
    sources = [doc for path in stdlib_files() for doc in docstrings(path)] + reference_topics()
    for doc in sources:
        if len(doc) >= min_chars and is_prose(doc) and doc not in seen:
            seen.add(doc)
            docs.append(doc)
    return docs


def write_jsonl(path, docs):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for d in docs:
            f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")


def train_tokenizer(docs):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)  # offsets only, no BOS/EOS
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[eot],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer, length=len(docs))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=eot,
        pad_token=eot,
        model_max_length=int(1e9),
    )


if __name__ == "__main__":
    docs = build_corpus()
    train, val = [], []
    for i, d in enumerate(docs):
        (val if i % val_every == val_every - 1 else train).append(d)
    cum = itertools.accumulate(len(d) for d in train)  # cap train size, keeping order
    train = [d for d, c in zip(train, cum) if c <= max_train_chars]

    os.makedirs(data_dir, exist_ok=True)
    write_jsonl(os.path.join(data_dir, "train.jsonl"), train)
    write_jsonl(os.path.join(data_dir, "val.jsonl"), val)

    tok = train_tokenizer(train)
    os.makedirs(tok_dir, exist_ok=True)
    tok.save_pretrained(tok_dir)

    print(f"stdlib: {stdlib_dir}")
    for name, split in [("train", train), ("val", val)]:
        chars = sum(len(d) for d in split)
        tokens = sum(len(ids) for ids in tok(split)["input_ids"])
        print(f"{name}: {len(split):,} docs, {chars:,} chars, {tokens:,} tokens")
    print(
        f"tokenizer: {len(tok)} tokens, eos_token_id={tok.eos_token_id}, saved to {os.path.relpath(tok_dir, repo_dir)}"
    )
