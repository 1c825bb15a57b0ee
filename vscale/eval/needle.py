"""Needle-in-a-haystack retrieval (docs/method.md §5): prompts built from eval text with a fixed seed,
answered by greedy decoding, scored by exact match of the needle value.

`single` hides one needle whose value is a number, `single_uuid` one whose value is a UUID (36
characters, many tokens to copy: the paper's second single-needle variant); `multi` hides several
key-value needles with number values and asks for one key, so a model must retrieve the right
number rather than the only number in the context.

Case i of a seed depends only on (seed, i), so raising `n` adds cases without changing the
others. Its key(s) and value(s) do not depend on `context_len` either: a length sweep asks for
the same needles in longer haystacks.
"""

import inspect
import random
import re
import statistics
import uuid
from dataclasses import dataclass

import torch

from vscale.errors import ConfigError

KINDS = ("single", "single_uuid", "multi")
KEYS = (
    "apple",
    "river",
    "copper",
    "violet",
    "falcon",
    "marble",
    "cedar",
    "harbor",
    "lantern",
    "meadow",
    "quartz",
    "saffron",
    "tundra",
    "willow",
    "ember",
    "glacier",
)
NEEDLE = " The special magic {noun} for {key} is {value}."
QUESTION = " What is the special magic {noun} for {key}? The special magic {noun} for {key} is"
SENTENCE_ENDS = (".", "!", "?", "\n\n")  # a single newline often wraps a sentence
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")  # "48213.5" and "48,213" are one number, neither equal to "48213"
UUID = re.compile(
    r"(?<![0-9a-fA-F-])[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}(?![0-9a-fA-F-])"
)  # whole, not part of a longer one
NOUN = {"single": "number", "single_uuid": "uuid", "multi": "number"}
VALUE = {"single": NUMBER, "single_uuid": UUID, "multi": NUMBER}


@dataclass
class NeedleCase:
    prompt_ids: list[int]
    answer: str
    context_tokens: int
    kind: str


def _needles(rng: random.Random, kind: str, n_keys: int, corpus: str) -> tuple[list[str], list[str], int]:
    """Keys, values and the asked index; values are distinct and absent from the filler text, so
    the asked value occurs in the prompt exactly once."""
    keys = rng.sample(KEYS, n_keys if kind == "multi" else 1)
    values: list[str] = []
    while len(values) < len(keys):
        value = (
            str(uuid.UUID(int=rng.getrandbits(128), version=4))
            if kind == "single_uuid"
            else str(rng.randint(10_000, 99_999))
        )
        if value not in values and value not in corpus:
            values.append(value)
    return keys, values, rng.randrange(len(keys))


def make_cases(
    texts: list[str], tokenizer, context_len: int, n: int, seed: int, kind: str = "single", n_keys: int = 4
) -> list[NeedleCase]:
    """n prompts of exactly context_len tokens: filler from `texts` (documents joined with eos, as
    in training, so the tokenizer needs one) at a seed-chosen offset, each needle at a seed-chosen
    sentence boundary (any token boundary when the window has too few), then the question and the
    answer prefix."""
    if kind not in KINDS:
        raise ConfigError(f"needle kind={kind!r} is unknown; choose one of {', '.join(KINDS)}.")
    if kind == "multi" and not 1 <= n_keys <= len(KEYS):
        raise ConfigError(f"needle n_keys={n_keys} must be between 1 and {len(KEYS)} (the number of distinct keys).")
    if n < 1:
        raise ConfigError(f"needle n={n} must be at least 1.")
    eos = tokenizer.eos_token_id
    filler = [
        t for ids in tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"] for t in ids + [eos]
    ]
    ends = {t for t in set(filler) if tokenizer.decode([t]).endswith(SENTENCE_ENDS)} | {eos}
    encode = lambda s: tokenizer.encode(s, add_special_tokens=False)

    drawn = []
    corpus = "\n".join(texts)
    for i in range(n):
        rng = random.Random(f"{seed}:{i}")
        keys, values, asked = _needles(rng, kind, n_keys, corpus)
        needles = [encode(NEEDLE.format(noun=NOUN[kind], key=k, value=v)) for k, v in zip(keys, values)]
        drawn.append((rng, needles, encode(QUESTION.format(noun=NOUN[kind], key=keys[asked])), values[asked]))
    # one filler token per needle at least, so that every needle gets its own depth
    minimum = max(len(question) + sum(len(x) + 1 for x in needles) for _, needles, question, _ in drawn)
    if context_len < minimum:
        raise ConfigError(
            f"needle context_len={context_len} is too short for the "
            f"needle(s) and question of these cases; use at least {minimum}."
        )
    if len(filler) < context_len:
        raise ConfigError(
            f"needle texts hold {len(filler)} filler tokens, fewer than context_len={context_len}; give more eval text."
        )

    cases = []
    for rng, needles, question, answer in drawn:
        budget = context_len - len(question) - sum(map(len, needles))
        start = rng.randrange(len(filler) - budget + 1)
        hay = filler[start : start + budget]
        boundaries = [i for i in range(budget + 1) if i == 0 or hay[i - 1] in ends]
        depths = sorted(rng.sample(boundaries if len(boundaries) >= len(needles) else range(budget + 1), len(needles)))
        prompt, prev = [], 0
        for depth, needle in zip(depths, needles):
            prompt += hay[prev:depth] + needle
            prev = depth
        prompt += hay[prev:] + question
        cases.append(NeedleCase(prompt, answer, len(prompt), kind))
    return cases


def score(answer: str, generated: str, kind: str = "single") -> bool:
    """Exact match: the first value of the kind's shape in the continuation (a number, or a UUID)
    is the needle value, whole."""
    found = VALUE[kind].search(generated)
    return found is not None and found.group() == answer


GENERATION_BATCH = 16
"""Cases decoded together in one batch."""


@torch.no_grad()
def generate_answers(model, prompts: list[list[int]], max_new_tokens: int, eos_id: int | None) -> list[list[int]]:
    """Greedy continuations of prompts of one length, decoded together as one batch (no padding, so
    each row computes what it would alone): each row's new tokens, up to and including eos. A plain
    argmax loop rather than `generate`, which would merge in a checkpoint's generation_config
    (repetition penalty, ...)."""
    if len({len(p) for p in prompts}) != 1:
        raise ConfigError(
            f"needle prompts decoded together must have one length; got {sorted({len(p) for p in prompts})}."
        )
    # logits of the last position only: the full (context x vocab) matrix is large at long context
    out = model(input_ids=torch.tensor(prompts, device=model.device), use_cache=True, logits_to_keep=1)
    key, new = _cache_name(model), [[] for _ in prompts]
    done = [False] * len(prompts)
    for step in range(max_new_tokens):
        tokens = out.logits[:, -1].argmax(-1)
        for row, token in enumerate(tokens.tolist()):
            if not done[row]:
                new[row].append(token)
                done[row] = token == eos_id
        if all(done) or step == max_new_tokens - 1:
            break
        out = model(input_ids=tokens[:, None], use_cache=True, **{key: getattr(out, key)})
    return new


def _cache_name(model) -> str:
    """The name `model` takes and returns its KV cache under: `cache` from transformers 5.24, which deprecates
    `past_key_values`, the only name before (pyproject allows transformers >= 5.0)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def accuracy(model, tokenizer, cases: list[NeedleCase], max_new_tokens: int = 8) -> float:
    """Fraction of cases whose greedy answer matches the needle value exactly. Each case may
    generate `max_new_tokens`, or its answer's own tokens and 4 more where that is longer (a UUID
    takes tens of tokens). Cases of one length are decoded `GENERATION_BATCH` at a time."""
    if not cases:
        raise ConfigError("needle accuracy needs at least one case.")
    eos = tokenizer.eos_token_id
    budgets = [max(max_new_tokens, len(tokenizer.encode(f" {c.answer}.", add_special_tokens=False)) + 4) for c in cases]
    hits = []
    for start in range(0, len(cases), GENERATION_BATCH):
        chunk, limits = cases[start : start + GENERATION_BATCH], budgets[start : start + GENERATION_BATCH]
        answers = generate_answers(model, [c.prompt_ids for c in chunk], max(limits), eos)
        hits += [
            score(c.answer, tokenizer.decode(new[:limit], skip_special_tokens=True), c.kind)
            for c, new, limit in zip(chunk, answers, limits)
        ]
    return sum(hits) / len(hits)


def evaluate(
    model, tokenizer, texts: list[str], context_lens: list[int], seeds: list[int], n: int, kind: str
) -> dict[int, dict]:
    """Accuracy per context length: mean and population std (ddof=0, defined for one seed) over
    seeds, n cases per seed."""
    out = {}
    for length in context_lens:
        per_seed = [accuracy(model, tokenizer, make_cases(texts, tokenizer, length, n, seed, kind)) for seed in seeds]
        out[length] = {
            "mean": statistics.fmean(per_seed),
            "std": statistics.pstdev(per_seed),
            "per_seed": per_seed,
            "n": n,
        }
    return out
