"""Needle-in-a-haystack retrieval (SPEC §5): cases built from eval text with a fixed seed,
answered by greedy decoding, scored by exact match of the needle value.

`single` hides one needle; `multi` hides several key-value needles and asks for one key, so
a model must retrieve the right one rather than the only number in the context.
"""

import random
import re
import statistics
from dataclasses import dataclass

import torch

KINDS = ("single", "multi")
KEYS = ("apple", "river", "copper", "violet", "falcon", "marble", "cedar", "harbor", "lantern", "meadow", "quartz", "saffron")
NEEDLE = " The special magic number for {key} is {value}."
QUESTION = " What is the special magic number for {key}? The special magic number for {key} is"


@dataclass
class NeedleCase:
    prompt_ids: list[int]
    answer: str
    context_tokens: int
    kind: str


def make_cases(texts: list[str], tokenizer, context_len: int, n: int, seed: int, kind: str = "single", n_keys: int = 4) -> list[NeedleCase]:
    """n prompts of at most context_len tokens: filler from `texts` at a seed-chosen offset, the
    needle(s) at seed-chosen token depths, then the question and the answer prefix."""
    if kind not in KINDS:
        raise ValueError(f"needle kind={kind!r} is unknown; choose one of {', '.join(KINDS)}.")
    rng = random.Random(f"{seed}/{context_len}/{kind}")
    filler = tokenizer(" ".join(texts), add_special_tokens=False, verbose=False)["input_ids"]
    encode = lambda s: tokenizer.encode(s, add_special_tokens=False)
    cases = []
    for _ in range(n):
        keys = rng.sample(KEYS, n_keys if kind == "multi" else 1)
        values = [str(rng.randint(10_000, 99_999)) for _ in keys]
        asked = rng.randrange(len(keys))
        needles = [encode(NEEDLE.format(key=k, value=v)) for k, v in zip(keys, values)]
        question = encode(QUESTION.format(key=keys[asked]))
        budget = context_len - len(question) - sum(map(len, needles))
        if budget < 1:
            raise ValueError(f"needle context_len={context_len} is too short: the needle(s) and question take {context_len - budget} tokens; use at least {context_len - budget + 1}.")
        if len(filler) < budget:
            raise ValueError(f"needle filler: the eval text has {len(filler)} tokens, fewer than the {budget} needed for context_len={context_len}.")
        start = rng.randrange(len(filler) - budget + 1)
        hay = filler[start : start + budget]
        prompt, prev = [], 0
        for depth, needle in zip(sorted(rng.randrange(budget + 1) for _ in needles), needles):
            prompt += hay[prev:depth] + needle
            prev = depth
        prompt += hay[prev:] + question
        cases.append(NeedleCase(prompt, values[asked], len(prompt), kind))
    return cases


def score(answer: str, generated: str) -> bool:
    """Exact match: the first number in the continuation is the needle value."""
    found = re.search(r"\d+", generated)
    return found is not None and found.group() == answer


@torch.no_grad()
def generate_answer(model, prompt_ids: list[int], max_new_tokens: int, eos_id: int | None) -> list[int]:
    """Greedy continuation (new tokens only) with the model's own `generate`."""
    device = next(model.parameters()).device
    ids = torch.tensor([prompt_ids], device=device)
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         do_sample=False, eos_token_id=eos_id, pad_token_id=eos_id)
    return out[0, len(prompt_ids) :].tolist()


def accuracy(model, tokenizer, cases: list[NeedleCase], max_new_tokens: int = 8) -> float:
    hits = [score(c.answer, tokenizer.decode(generate_answer(model, c.prompt_ids, max_new_tokens, tokenizer.eos_token_id))) for c in cases]
    return sum(hits) / len(hits)


def evaluate(model, tokenizer, texts: list[str], context_lens: list[int], seeds: list[int], n: int, kind: str) -> dict[int, dict]:
    """Accuracy per context length: mean and population std over seeds, n cases per seed."""
    out = {}
    for length in context_lens:
        per_seed = [accuracy(model, tokenizer, make_cases(texts, tokenizer, length, n, seed, kind)) for seed in seeds]
        out[length] = {"mean": statistics.fmean(per_seed), "std": statistics.pstdev(per_seed), "per_seed": per_seed, "n": n}
    return out
