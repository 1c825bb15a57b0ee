"""Issue 31 probe (attempt, not shipped): does content-based copying form? A Llama trained on synthetic repeat rows (token ids), copy loss at held-out periods."""

import argparse
import random
import time

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--layers", type=int, default=2)
p.add_argument("--heads", type=int, default=4)
p.add_argument("--d", type=int, default=64)
p.add_argument("--ff", type=int, default=128)
p.add_argument("--tied", type=int, default=0)
p.add_argument("--lr", type=float, default=3e-3)
p.add_argument("--steps", type=int, default=1500)
p.add_argument("--vocab", type=int, default=4096)
p.add_argument("--pool", type=int, default=4093)
p.add_argument("--row", type=int, default=128)
p.add_argument("--bs", type=int, default=32)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--mode", default="gap")
p.add_argument("--every", type=int, default=100)
p.add_argument("--wd", type=float, default=0.0)
a = p.parse_args()
torch.set_num_threads(1)
torch.manual_seed(a.seed)
HELD = {20, 37, 50}
cfg = LlamaConfig(
    vocab_size=a.vocab,
    hidden_size=a.d,
    intermediate_size=a.ff,
    num_hidden_layers=a.layers,
    num_attention_heads=a.heads,
    num_key_value_heads=a.heads,
    max_position_embeddings=256,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    tie_word_embeddings=bool(a.tied),
)
m = LlamaForCausalLM(cfg)
print("params", sum(p.numel() for p in m.parameters()), flush=True)
opt = torch.optim.AdamW(m.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=a.wd)
rng = random.Random(a.seed)
pool = list(range(3, 3 + a.pool))


def row():
    t = [rng.choice(pool) for _ in range(a.row)]
    if a.mode == "gap":  # one span copied once at a distance drawn uniformly, held-out distances skipped
        while True:
            L = rng.randint(3, 40)
            per = rng.randint(max(L, 4), a.row - L - 1)
            if per not in HELD:
                break
        s = rng.randrange(0, a.row - per - L + 1)
        t[s + per : s + per + L] = t[s : s + L]
    elif a.mode == "multi":  # several spans, each copied at its own distance
        for _ in range(3):
            while True:
                L = rng.randint(3, 20)
                per = rng.randint(max(L, 4), a.row - L - 1)
                if per not in HELD:
                    break
            s = rng.randrange(0, a.row - per - L + 1)
            t[s + per : s + per + L] = t[s : s + L]
    elif a.mode == "tile":  # a span tiled to the row's end, its period drawn per row
        while True:
            per = rng.randint(4, 63)
            if per not in HELD:
                break
        t = [t[i % per] for i in range(a.row)]
    return t


def evalcopy(P, n=16):
    g = random.Random(1000 + P)
    x = torch.tensor([[g.choice(pool) for _ in range(P)] * 2 for _ in range(n)])
    with torch.no_grad():
        lo = m(x).logits[:, :-1]
    nll = F.cross_entropy(lo.reshape(-1, a.vocab), x[:, 1:].reshape(-1), reduction="none").view(n, -1)
    return nll[:, P:].mean().item(), nll[:, 2 : P - 1].mean().item()  # second copy (from its 2nd token) vs first


t0 = time.time()
for step in range(1, a.steps + 1):
    lr = a.lr * min(1, step / 30)
    for gr in opt.param_groups:
        gr["lr"] = lr
    x = torch.tensor([row() for _ in range(a.bs)])
    loss = m(x, labels=x).loss
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % a.every == 0:
        r = {P: evalcopy(P) for P in (8, 20, 37, 50, 63)}
        print(
            f"{step} {time.time() - t0:.0f}s loss {loss.item():.3f} "
            + " ".join(f"P{P}:{s:.2f}/{f:.2f}" for P, (s, f) in r.items()),
            flush=True,
        )
