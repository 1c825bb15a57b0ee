"""The needle checkpoint copies by content, not by distance (issue 31): on a span of random tokens repeated
once, its loss over the second copy is low at periods that no copy row tiles at (scripts/build_needle_data.py's
HELD_OUT), while the first copy, which nothing predicts, stays near chance. An earlier recipe's models copied
only from 63 tokens back, its rows' one period, and were confidently wrong at any other. 37 is the strict case:
no training row repeats anything 37 tokens back, while 20 and 50 are multiples of trained periods."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vscale.data.packing import load_tokenizer
from vscale.model import from_pretrained

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("build_needle_data", ROOT / "scripts" / "build_needle_data.py")
build_needle_data = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_needle_data)
CHECKPOINT = "assets/needle-tiny"
SPANS = 8


def copy_losses(model, period: int, generator: torch.Generator) -> tuple[float, float]:
    """Mean next-token loss (nats) over the first and the second copy of `SPANS` random spans of `period` tokens,
    each repeated once back to back; a copy's first token is left out (nothing before it says what it is)."""
    span = torch.randint(1, model.config.vocab_size, (SPANS, period), generator=generator)
    ids = torch.cat([span, span], dim=1)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1]
    loss = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")  # loss[:, i] predicts token i + 1
    return loss[:, : period - 1].mean().item(), loss[:, period:].mean().item()


def smallest_period(ids: list[int]) -> int | None:
    return next((p for p in range(1, len(ids)) if ids[p:] == ids[:-p]), None)


def test_copy_rows_tile_at_many_periods_and_never_at_a_held_out_one():
    periods = build_needle_data.periods()
    assert set(periods).isdisjoint(build_needle_data.HELD_OUT) and len(periods) > 50
    assert min(periods) < min(build_needle_data.HELD_OUT) and max(periods) > max(build_needle_data.HELD_OUT)


def test_copy_rows_come_in_turn_tiled_random_tiled_text_and_text_with_a_recurring_span():
    tokenizer = load_tokenizer(str(ROOT / "assets" / "tokenizer-tiny"))
    texts = [json.loads(line)["text"] for line in (ROOT / build_needle_data.SOURCE).read_text().splitlines()[:300]]
    rows = build_needle_data.repeats(tokenizer, 8 * len(build_needle_data.COPY_ROWS), build_needle_data.ROW, texts)
    found = set()
    for i, text in enumerate(rows):
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert len(ids) == build_needle_data.ROW - 1 and tokenizer.decode(ids[-1:]) == "."
        period = smallest_period(ids[:-1])
        if build_needle_data.COPY_ROWS[i % len(build_needle_data.COPY_ROWS)] == "recurrence":
            assert period is None, "text with one recurring span is not a tiling"
        else:
            assert period in build_needle_data.periods() and len(set(ids[:period])) > 1
            found.add(period)
    assert len(found) > 12


@pytest.mark.parametrize("period", build_needle_data.HELD_OUT)
def test_the_needle_checkpoint_copies_a_random_span_at_a_period_it_was_never_trained_on(period):
    model = from_pretrained(CHECKPOINT).eval()
    first, second = copy_losses(model, period, torch.Generator().manual_seed(period))
    assert first > 0.6 * math.log(model.config.vocab_size), "the first copy is unpredictable"
    assert second < 1.0, f"second copy {second:.2f} nats at period {period}"
