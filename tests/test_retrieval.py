"""Needle-in-a-haystack cases, greedy retrieval and exact-match scoring (SPEC §5)."""

import json

import pytest
import torch

from vscale.data import load_tokenizer
from vscale.retrieval import accuracy, evaluate, make_cases, score

TOKENIZER = load_tokenizer("assets/tokenizer-tiny")
TEXTS = [json.loads(line)["text"] for line in open("data/tiny/val.jsonl")][:40]


def decoded(case):
    return TOKENIZER.decode(case.prompt_ids)


def test_cases_are_deterministic_for_a_seed_and_differ_across_seeds():
    a, b = make_cases(TEXTS, TOKENIZER, 128, 3, seed=0), make_cases(TEXTS, TOKENIZER, 128, 3, seed=0)
    c = make_cases(TEXTS, TOKENIZER, 128, 3, seed=1)
    assert [x.prompt_ids for x in a] == [x.prompt_ids for x in b] != [x.prompt_ids for x in c]


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_prompts_fit_the_context_and_hold_the_asked_value_once(kind):
    for case in make_cases(TEXTS, TOKENIZER, 160, 5, seed=3, kind=kind):
        text = decoded(case)
        assert case.context_tokens == len(case.prompt_ids) <= 160
        assert text.count(case.answer) == 1
        assert text.count("The special magic number for") == (4 if kind == "multi" else 1) + 1  # needles + answer prefix
        assert text.endswith(" is")


def test_multi_key_prompts_hold_every_key_once():
    for case in make_cases(TEXTS, TOKENIZER, 200, 4, seed=5, kind="multi"):
        needles = decoded(case).split("The special magic number for ")[1:-1]
        keys = [s.split(" is ")[0] for s in needles]
        assert len(keys) == len(set(keys)) == 4


def test_an_oracle_that_copies_the_needle_scores_all_and_a_constant_scores_none():
    cases = make_cases(TEXTS, TOKENIZER, 128, 10, seed=0)
    assert sum(score(c.answer, f" {c.answer}.") for c in cases) == 10
    assert sum(score(c.answer, " 12345.") for c in cases if c.answer != "12345") == 0


def test_partial_or_later_numbers_are_wrong():
    assert not score("48213", " 4821")
    assert not score("48213", " 11 then 48213")
    assert score("48213", " 48213, I think")


def test_greedy_retrieval_runs_end_to_end_on_a_real_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    from vscale import apply_vscale

    torch.manual_seed(0)
    model = apply_vscale(LlamaForCausalLM(LlamaConfig(vocab_size=4096, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256)), "learned")
    value = accuracy(model, TOKENIZER, make_cases(TEXTS, TOKENIZER, 96, 2, seed=0), max_new_tokens=4)
    assert 0.0 <= value <= 1.0
    result = evaluate(model, TOKENIZER, TEXTS, [112, 128], seeds=[0, 1], n=1, kind="multi")
    assert set(result) == {112, 128} and all(len(r["per_seed"]) == 2 and r["std"] >= 0 for r in result.values())


def test_too_short_a_context_is_rejected():
    with pytest.raises(ValueError, match="context_len=20 is too short.*use at least"):
        make_cases(TEXTS, TOKENIZER, 20, 1, seed=0)


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="kind='triple' is unknown"):
        make_cases(TEXTS, TOKENIZER, 128, 1, seed=0, kind="triple")
