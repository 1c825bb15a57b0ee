"""The paper's recipe (docs/method.md §4): decay on matrices only, warm-up then cosine to min_lr."""

import math

import pytest
from conftest import tiny_model

from vscale import apply_vscale
from vscale.train.optim import build_optimizer


def test_weight_decay_skips_norms_biases_and_theta():
    model = apply_vscale(tiny_model("qwen3"), "learned")
    opt, _ = build_optimizer(model, 1e-3, 1e-4, 10, 100, 0.1, (0.9, 0.95), 1e-8)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0.1 for p in g["params"]}
    plain = {names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert decayed | plain == set(names.values()) and not decayed & plain
    assert all(("norm" in n or n.endswith("theta")) for n in plain)
    assert any(n.endswith("vscale.theta") for n in plain) and any("q_norm" in n for n in plain)
    assert all(n.endswith("weight") and "norm" not in n for n in decayed)
    assert opt.defaults["betas"] == (0.9, 0.95) and opt.defaults["eps"] == 1e-8


def test_schedule_warms_up_linearly_then_decays_by_cosine_to_min_lr():
    model = tiny_model()
    lr, min_lr, warmup, total = 1e-3, 1e-4, 10, 110
    opt, sched = build_optimizer(model, lr, min_lr, warmup, total, 0.1, (0.9, 0.95), 1e-8)
    seen = []
    for _ in range(total + 5):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[:warmup] == pytest.approx([lr * (s + 1) / warmup for s in range(warmup)])
    mid = warmup + (total - warmup) // 2
    assert seen[mid] == pytest.approx(min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * 0.5)))
    assert seen[total:] == pytest.approx([min_lr] * 5)
