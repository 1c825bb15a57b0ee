"""Samples of the RULER-style needle task in ruler_niah.yaml, in RULER's schema (input, outputs,
length, max_length, gen_prefix), scored by RULER's own process_results."""

import random

import datasets
from lm_eval.tasks.ruler.common_utils import get_tokenizer, process_results, resolve_tokenizer_name

__all__ = ["niah_single", "process_results"]

# RULER's niah_utils.TEMPLATE and needle, single-needle wording (prepare_niah.generate_input_output)
TEMPLATE = (
    "A special magic number is hidden within the following text. Make sure to memorize it. I will quiz you about the "
    "number afterwards.\n{context}\nWhat is the special magic number for {key} mentioned in the provided text?"
)
NEEDLE = "One of the special magic numbers for {key} is: {value}."
HAYSTACK = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
KEYS = ("amber-river", "quiet-lantern", "brisk-meadow", "hollow-cedar")
ANSWER_TOKENS = 12  # the answer room kept in each length (RULER keeps 128)
SAMPLES = 4


def _sample(rng: random.Random, tokenizer, max_length: int) -> dict:
    """The most haystack sentences (the needle at a random depth among them) that fit max_length with
    the answer room, found by bisection."""
    key, value, depth = rng.choice(KEYS), str(rng.randint(10**6, 10**7 - 1)), rng.random()

    def build(repeats: int) -> tuple[str, int]:
        sentences = [HAYSTACK] * repeats
        sentences.insert(round(depth * repeats), NEEDLE.format(key=key, value=value))
        text = TEMPLATE.format(context="\n".join(sentences), key=key)
        return text, len(tokenizer(text).input_ids) + ANSWER_TOKENS

    low, high = 0, max_length  # build(low) fits (checked below), build(high) does not
    if build(0)[1] > max_length:
        raise ValueError(
            f"max_seq_lengths {max_length}: too short for the template, one needle and {ANSWER_TOKENS} answer tokens."
        )
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if build(middle)[1] <= max_length else (low, middle)
    text, length = build(low)
    return {
        "input": text,
        "outputs": [value],
        "length": length,
        "max_length": max_length,
        "gen_prefix": f"The special magic number for {key} mentioned in the provided text is",
    }


def niah_single(**metadata):
    tokenizer = get_tokenizer(resolve_tokenizer_name(metadata))
    rng = random.Random(42)
    rows = [_sample(rng, tokenizer, length) for length in metadata["max_seq_lengths"] for _ in range(SAMPLES)]
    return {"test": datasets.Dataset.from_list(rows, split=datasets.Split.TEST)}
