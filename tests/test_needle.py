"""Needle-in-a-haystack cases, greedy retrieval and exact-match scoring (docs/method.md §5), on the shipped
tokenizer and eval text."""

import json
import re
import statistics
import uuid
import warnings

import pytest
import torch

from vscale.data import load_tokenizer
from vscale.eval.needle import KINDS, NOUN, SENTENCE_ENDS, accuracy, evaluate, generate_answers, make_cases, score

TOKENIZER = load_tokenizer("assets/tokenizer-tiny")
TEXTS = [json.loads(line)["text"] for line in open("data/tiny/val.jsonl")]
NEEDLE = "The special magic number for"
LENGTH = 96


def decoded(case) -> str:
    return TOKENIZER.decode(case.prompt_ids)


def asked_key(case) -> str:
    return re.search(r"What is the special magic (?:number|uuid) for (\w+)\?", decoded(case)).group(1)


def tiny_llama(seed: int = 0):
    """A random 1-layer Llama with the shipped tokenizer's 4096-token vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(TOKENIZER),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def learned():
    """A real model trained to answer the first seed-0 case, and that case: an honest oracle."""
    case = make_cases(TEXTS, TOKENIZER, LENGTH, 1, seed=0)[0]
    model = tiny_llama().train()
    target = TOKENIZER.encode(f" {case.answer}.", add_special_tokens=False) + [TOKENIZER.eos_token_id]
    ids = torch.tensor([case.prompt_ids + target])
    labels = ids.clone()
    labels[0, : len(case.prompt_ids)] = -100
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(20):
        opt.zero_grad()
        model(input_ids=ids, labels=labels).loss.backward()
        opt.step()
    return model.eval(), case


def test_cases_are_deterministic_for_a_seed_and_differ_across_seeds():
    a, b = make_cases(TEXTS, TOKENIZER, LENGTH, 3, seed=0), make_cases(TEXTS, TOKENIZER, LENGTH, 3, seed=0)
    c = make_cases(TEXTS, TOKENIZER, LENGTH, 3, seed=1)
    assert a == b
    assert all(x.prompt_ids != y.prompt_ids and x.answer != y.answer for x, y in zip(a, c))


def test_more_cases_extend_a_seed_without_changing_the_first_ones():
    assert make_cases(TEXTS, TOKENIZER, LENGTH, 5, seed=2)[:3] == make_cases(TEXTS, TOKENIZER, LENGTH, 3, seed=2)


def test_a_length_sweep_asks_for_the_same_needles_in_other_haystacks():
    short, long = (
        make_cases(TEXTS, TOKENIZER, LENGTH, 3, seed=0, kind="multi"),
        make_cases(TEXTS, TOKENIZER, 2 * LENGTH, 3, seed=0, kind="multi"),
    )
    assert [c.answer for c in short] == [c.answer for c in long] and [asked_key(c) for c in short] == [
        asked_key(c) for c in long
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_prompts_fill_the_context_and_hold_the_asked_value_once(kind):
    for case in make_cases(TEXTS, TOKENIZER, 160, 8, seed=3, kind=kind):
        assert case.context_tokens == len(case.prompt_ids) == 160 and case.kind == kind
        assert decoded(case).count(case.answer) == 1
        assert decoded(case).count(f"The special magic {NOUN[kind]} for {asked_key(case)} is {case.answer}.") == 1


@pytest.mark.parametrize("kind", KINDS)
def test_prompts_end_with_the_question_and_the_answer_prefix(kind):
    for case in make_cases(TEXTS, TOKENIZER, 160, 4, seed=3, kind=kind):
        key, noun = asked_key(case), NOUN[kind]
        assert decoded(case).endswith(
            f" What is the special magic {noun} for {key}? The special magic {noun} for {key} is"
        )


def test_uuid_needles_hold_version_4_uuids():
    for case in make_cases(TEXTS, TOKENIZER, 160, 4, seed=0, kind="single_uuid"):
        assert uuid.UUID(case.answer).version == 4 and str(uuid.UUID(case.answer)) == case.answer


def test_multi_key_prompts_hold_every_key_once():
    for case in make_cases(TEXTS, TOKENIZER, 200, 8, seed=5, kind="multi", n_keys=4):
        needles = re.findall(rf"{NEEDLE} (\w+) is (\d+)\.", decoded(case))
        keys, values = [k for k, _ in needles], [v for _, v in needles]
        assert len(set(keys)) == len(set(values)) == 4 and asked_key(case) in keys
        assert all(
            decoded(case).count(f"{NEEDLE} {k} is") == 1 + (k == asked_key(case)) for k in keys
        )  # + answer prefix


def test_needles_sit_at_sentence_boundaries():
    for case in make_cases(TEXTS, TOKENIZER, 400, 8, seed=7, kind="multi"):
        for before in decoded(case).split(f" {NEEDLE}")[:-2]:  # the last two pieces end in the question
            assert before == "" or before.endswith(SENTENCE_ENDS + (TOKENIZER.eos_token,))


def test_an_oracle_that_copies_the_needle_scores_all_and_a_constant_scores_none():
    cases = make_cases(TEXTS, TOKENIZER, LENGTH, 10, seed=0)
    assert all(score(c.answer, f" {c.answer}.") for c in cases)
    assert not any(score(c.answer, " 12345.") for c in cases if c.answer != "12345")


def test_a_uuid_answer_must_be_the_first_whole_uuid_of_the_continuation():
    answer, other = "e3e70682-c209-4cac-a29f-6fbed82c07cd", "f728b4fa-4248-4e3a-8a5d-2f346baa9455"
    assert score(answer, f" {answer}.", "single_uuid") and score(answer, f" is {answer}", "single_uuid")
    assert not score(answer, f" {answer[:-1]}", "single_uuid")  # a digit short
    assert not score(answer, f" {answer}0", "single_uuid")  # longer
    assert not score(answer, f" {other} then {answer}", "single_uuid")  # not the first
    assert not score(answer, " 48213", "single_uuid")


def test_partial_longer_or_later_numbers_are_wrong():
    assert not score("48213", " 4821")
    assert not score("48213", " 482135")
    assert not score("48213", " 48213.5")
    assert not score("48213", " 7, then 48213")
    assert not score("48213", " none")
    assert score("48213", "48213, I think")


def test_the_batched_greedy_loop_matches_hf_generate_on_each_prompt_alone():
    model, cases = tiny_llama(), make_cases(TEXTS, TOKENIZER, LENGTH, 3, seed=0)
    expected = []
    for case in cases:
        ids = torch.tensor([case.prompt_ids])
        expected.append(
            model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=6,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=TOKENIZER.eos_token_id,
            )[0, ids.shape[1] :].tolist()
        )
    assert generate_answers(model, [c.prompt_ids for c in cases], 6, None) == expected


def test_a_row_stops_at_its_eos_while_the_others_go_on():
    model, cases = tiny_llama(), make_cases(TEXTS, TOKENIZER, LENGTH, 2, seed=0)
    free = generate_answers(model, [c.prompt_ids for c in cases], 4, None)
    eos = free[0][1]  # row 0's second token, as if it were eos
    stopped = generate_answers(model, [c.prompt_ids for c in cases], 4, eos)
    assert stopped == [row[: row.index(eos) + 1] if eos in row else row for row in free] and len(stopped[0]) <= 2


def test_the_greedy_loop_passes_the_kv_cache_without_a_deprecated_name(caplog):
    """transformers 5.24 renamed `past_key_values` to `cache` (input and output) and warns on the old name."""
    model, cases = tiny_llama(), make_cases(TEXTS, TOKENIZER, LENGTH, 2, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        generate_answers(model, [c.prompt_ids for c in cases], 3, None)
    assert [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()] == []


def test_accuracy_runs_greedy_generation_end_to_end_on_a_random_model():
    value = accuracy(
        tiny_llama(), TOKENIZER, make_cases(TEXTS, TOKENIZER, LENGTH, 3, seed=0, kind="multi"), max_new_tokens=4
    )
    assert 0.0 <= value <= 1.0


def test_accuracy_counts_a_learned_answer_and_not_one_for_another_case(learned):
    model, case = learned
    other = make_cases(TEXTS, TOKENIZER, LENGTH, 1, seed=1)[0]
    assert accuracy(model, TOKENIZER, [case]) == 1.0
    assert accuracy(model, TOKENIZER, [case, other]) == 0.5


def test_evaluate_reports_mean_and_population_std_over_seeds_per_context_length(learned):
    model, _ = learned
    result = evaluate(model, TOKENIZER, TEXTS, [LENGTH, 128], seeds=[0, 1], n=1, kind="single")
    assert list(result) == [LENGTH, 128]
    assert result[LENGTH] == {"mean": 0.5, "std": 0.5, "per_seed": [1.0, 0.0], "n": 1}
    assert result[128]["mean"] == statistics.fmean(result[128]["per_seed"]) and result[128]["std"] == statistics.pstdev(
        result[128]["per_seed"]
    )


def test_too_short_a_context_is_rejected_with_the_minimum_that_works():
    with pytest.raises(ValueError, match=r"context_len=20 is too short.*use at least (\d+)") as error:
        make_cases(TEXTS, TOKENIZER, 20, 4, seed=0, kind="multi")
    minimum = int(re.search(r"at least (\d+)", str(error.value)).group(1))
    assert len(make_cases(TEXTS, TOKENIZER, minimum, 4, seed=0, kind="multi")[0].prompt_ids) == minimum
    with pytest.raises(ValueError, match=rf"context_len={minimum - 1} is too short"):
        make_cases(TEXTS, TOKENIZER, minimum - 1, 4, seed=0, kind="multi")


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="kind='triple' is unknown"):
        make_cases(TEXTS, TOKENIZER, LENGTH, 1, seed=0, kind="triple")


def test_more_keys_than_the_key_list_is_rejected():
    with pytest.raises(ValueError, match="n_keys=99"):
        make_cases(TEXTS, TOKENIZER, LENGTH, 1, seed=0, kind="multi", n_keys=99)


def test_too_little_filler_text_is_rejected():
    with pytest.raises(ValueError, match="filler tokens, fewer than context_len=400"):
        make_cases(TEXTS[:1], TOKENIZER, 400, 1, seed=0)


def test_needle_accuracy_is_measured_in_full_precision_and_under_each_w8a8_mode(learned):
    """evaluate_checkpoint's needle numbers against needle.evaluate run by hand inside each W8A8 block."""
    import contextlib

    from vscale.eval.checkpoints import Loaded
    from vscale.eval.measure import Plan, evaluate_checkpoint
    from vscale.eval.quant import QUANT_MODES, w8a8

    model, case = learned
    calibration = [torch.tensor([case.prompt_ids])]
    plan = Plan(calibration, calibration, TOKENIZER, TEXTS, list(QUANT_MODES), [LENGTH], [0, 1], 1)
    measured = evaluate_checkpoint(Loaded(model, "oracle", "off", data={"seq_len": LENGTH}), plan)
    assert measured["errors"] == {}
    needle = measured["results"]["needle"]
    assert list(needle) == ["full", *QUANT_MODES] and all(list(needle[p]) == list(KINDS) for p in needle)
    for precision in needle:
        with contextlib.nullcontext() if precision == "full" else w8a8(model, precision, calibration):
            for kind in KINDS:
                assert needle[precision][kind][LENGTH] == evaluate(model, TOKENIZER, TEXTS, [LENGTH], [0, 1], 1, kind)[
                    LENGTH
                ] | {"beyond_trained_length": False}
    assert needle["full"]["single"][LENGTH]["per_seed"] == [1.0, 0.0]  # the oracle's case is seed 0's
