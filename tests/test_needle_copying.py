"""The needle checkpoint copies by content, not by distance (issue 31): on a span of random tokens repeated
once, its loss over the second copy is low at periods that no training row repeats at
(scripts/build_needle_data.py's HELD_OUT), while the first copy, which nothing predicts, stays near chance.
An earlier recipe's models copied only from 63 tokens back, its rows' one period, and were confidently wrong
at any other."""

import importlib.util
import math
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

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
    vocab = model.config.vocab_size
    span = torch.randint(1, vocab, (SPANS, period), generator=generator)
    ids = torch.cat([span, span], dim=1)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1]
    loss = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")  # loss[:, i] predicts token i + 1
    return loss[:, : period - 1].mean().item(), loss[:, period:].mean().item()


def test_training_repeats_vary_in_length_offset_and_period_and_never_sit_at_a_held_out_period():
    rng, width = random.Random(0), 126
    layouts = [build_needle_data.repeat_layout(rng, width) for _ in range(20000)]
    periods = {period for _, _, period in layouts}
    assert periods.isdisjoint(build_needle_data.HELD_OUT)
    assert (
        len(periods) > 100 and len({length for _, length, _ in layouts}) > 50 and len({s for s, _, _ in layouts}) > 100
    )
    assert all(
        0 <= start and start + period + length <= width and period >= length for start, length, period in layouts
    )


@pytest.mark.parametrize("period", build_needle_data.HELD_OUT)
def test_the_needle_checkpoint_copies_a_random_span_at_a_period_it_was_never_trained_on(period):
    model = from_pretrained(CHECKPOINT).eval()
    first, second = copy_losses(model, period, torch.Generator().manual_seed(period))
    assert first > 0.6 * math.log(model.config.vocab_size), "the first copy is unpredictable"
    assert second < 1.0, f"second copy {second:.2f} nats at period {period}"
