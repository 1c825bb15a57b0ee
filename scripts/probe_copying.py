"""Issue 31 probe (attempt, not shipped): per checkpoint, the copy losses of random-token spans repeated once (first
copy / second copy, nats, the test's protocol) at periods 8-63, single- and multi-needle accuracy at 128 tokens, and
the answer tokens' mean loss on 20 single-needle prompts (the retrieval signal before accuracy moves).

    python scripts/probe_copying.py runs/needle-tiny/off-seed0/checkpoints/step000*.ckpt
"""

import json
import sys

import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

from vscale.eval.checkpoints import load_checkpoint
from vscale.eval.needle import accuracy, make_cases
from vscale.model import from_pretrained

tok = AutoTokenizer.from_pretrained("assets/tokenizer-tiny")
TEXTS = [json.loads(line)["text"] for line in open("data/tiny/val.jsonl")]
single = [c for seed in (0, 1) for c in make_cases(TEXTS, tok, 128, 10, seed, "single")]
multi = [c for seed in (0, 1) for c in make_cases(TEXTS, tok, 128, 10, seed, "multi")]
answers = make_cases(TEXTS, tok, 120, 20, 0, "single")


def copy(model, period, n=8):
    span = torch.randint(1, model.config.vocab_size, (n, period), generator=torch.Generator().manual_seed(period))
    ids = torch.cat([span, span], 1)
    with torch.no_grad():
        loss = F.cross_entropy(model(input_ids=ids).logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
    return loss[:, : period - 1].mean().item(), loss[:, period:].mean().item()


def answer_loss(model):
    out = []
    for c in answers:
        a = tok.encode(" " + c.answer, add_special_tokens=False)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([c.prompt_ids + a])).logits[0, -len(a) - 1 : -1]
        out.append(F.cross_entropy(logits, torch.tensor(a)).item())
    return sum(out) / len(out)


torch.set_num_threads(1)
for path in sys.argv[1:]:
    m = (from_pretrained(path) if path.startswith("assets") else load_checkpoint(path).model).eval()
    losses = " ".join(f"{p}:{a:.2f}/{b:.2f}" for p in (8, 16, 20, 37, 50, 63) for a, b in [copy(m, p)])
    print(
        path,
        "single",
        accuracy(m, tok, single),
        "multi",
        accuracy(m, tok, multi),
        f"answer {answer_loss(m):.2f}",
        losses,
        flush=True,
    )
