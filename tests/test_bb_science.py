"""The science default in CI: configs/bb.yaml, seeded, grows the phenomenon the project measures
(an attention sink on <bos>, the gradient sink) within a stated number of steps; the diagnostics see
it exactly as eager attention and autograd do; the `backward` mode starts bit-identical to `off`
and differs from it only through value-path gradients."""

import pytest
import torch
import yaml
from conftest import metrics, train
from transformers import AutoModelForCausalLM

from vscale.data.synthetic import VAL_STREAM, BigramBackcopy
from vscale.diagnostics import diagnose
from vscale.model import build_config
from vscale.train.module import VScaleLM
from vscale.train.optim import build_optimizer

STEPS = 100
"""The baseline is measured at step STEPS - 1 (the last diagnostic step)."""
SEED = ["--seed_everything=3"]
"""Its sink appears at step 59 (in layer 2). The tests compute with AVX2 kernels (conftest, as run.cpu_capability:
avx2), so this trajectory is the same on every x86 machine: the assertions hold for this pinned seed, not by luck of a
machine."""
CONSTANT_LR = ["--model.lr=2e-2", "--model.min_lr=2e-2"]
"""lr = min_lr: after warm-up the schedule does not depend on max_steps, so these steps are those of a longer run."""
LOG_EVERY_STEP = ["--trainer.log_every_n_steps=1"]


def bb() -> dict:
    with open("configs/bb.yaml") as f:
        return yaml.safe_load(f)


def val_rows(n: int = 64) -> torch.Tensor:
    task, seq_len = BigramBackcopy(**bb()["data"]["synthetic"]), bb()["data"]["seq_len"]
    return torch.stack([task.row(seq_len, task.task_seed, VAL_STREAM, i) for i in range(n)])


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    root = tmp_path_factory.mktemp("bb")
    cli = train(
        root,
        f"--trainer.max_steps={STEPS}",
        f"--run.val_every_n_steps={STEPS}",
        f"--run.ckpt_every={STEPS}",
        *SEED,
        *CONSTANT_LR,
        *LOG_EVERY_STEP,
        config="configs/bb.yaml",
    )
    return cli.model.model, root / "bb" / "off-seed3"


def test_the_baseline_grows_an_attention_sink_and_a_gradient_sink_by_step_100(baseline):
    _, run = baseline
    layers = bb()["model"]["model_config"]["num_hidden_layers"]
    alpha = {l: metrics(run, f"sink/alpha/layer_{l}")[STEPS - 1] for l in range(layers)}
    sink = max(alpha, key=alpha.get)
    assert alpha[sink] > 0.3, alpha
    assert metrics(run, f"sink/rate/layer_{sink}")[STEPS - 1] == 1.0
    assert metrics(run, f"gsink/ratio/layer_{sink}")[STEPS - 1] > 10
    assert metrics(run, "train/loss_copy")[STEPS - 1] < 0.05, "the copy the sink heads serve is learned"


def test_the_diagnostics_see_the_trained_sink_as_eager_attention_and_autograd_do(baseline):
    """On the trained baseline: alpha from the materialised attention matrix of a plain eager copy of
    the model, R_GS from autograd at the post-RMSNorm attention input, the value ratio from v_proj's
    output; each equals what `vscale.diagnose` reports, in a layer with a sink."""
    model, _ = baseline
    ids = val_rows()
    measured = diagnose(model, ids)
    plain = AutoModelForCausalLM.from_config(
        build_config(bb()["model"]["model_config"], None), attn_implementation="eager"
    )
    plain.load_state_dict(model.state_dict())
    kept = {}

    def keep(name, l):
        def hook(module, args, out):
            if name == "g":
                out.retain_grad()
            kept[name, l] = out

        return hook

    for l, layer in enumerate(plain.model.layers):
        layer.input_layernorm.register_forward_hook(keep("g", l))
        layer.self_attn.v_proj.register_forward_hook(keep("v", l))
    out = plain(input_ids=ids, labels=ids, output_attentions=True, use_cache=False)
    out.loss.backward()
    alphas = []
    for l, attention in enumerate(out.attentions):
        alpha = attention[:, :, :64, 0].mean().item()  # one head: the mean over rows and queries 0..63
        g = kept[("g", l)].grad.norm(dim=-1).mean(0)
        v = kept[("v", l)].detach().norm(dim=-1).mean(0)  # one kv head: its norm is the value norm
        assert measured[f"sink/alpha/layer_{l}"] == pytest.approx(alpha, rel=1e-4, abs=1e-6)
        assert measured[f"gsink/ratio/layer_{l}"] == pytest.approx((g[0] / g[1:32].mean()).item(), rel=1e-3)
        assert measured[f"act/v_ratio/layer_{l}"] == pytest.approx((v[0] / v[1:16].mean()).item(), rel=1e-4)
        alphas.append(alpha)
    assert max(alphas) > 0.3, "the diagnostics were checked on a model that has a sink"


def test_backward_mode_starts_bit_identical_to_off_and_differs_only_in_value_path_gradients():
    """Same seed, same weights: logits and loss equal bit for bit; in the last layer every gradient
    that does not pass through a value (LM head, final norm, MLP, W_O, W_Q, W_K) equals off's, the
    value projections' differ in every layer; after one AdamW step the two models differ."""
    config, ids = bb()["model"], val_rows(32)
    modules = {}
    for mode in ("off", "backward"):
        torch.manual_seed(0)
        modules[mode] = VScaleLM(**{**config, "vscale": mode})
    off, back = (modules[m].model for m in ("off", "backward"))
    assert all(torch.equal(a, b) for a, b in zip(off.state_dict().values(), back.state_dict().values()))
    outs = {m: modules[m].model(input_ids=ids, labels=ids, use_cache=False) for m in modules}
    assert torch.equal(outs["off"].logits, outs["backward"].logits) and torch.equal(
        outs["off"].loss, outs["backward"].loss
    )
    for out in outs.values():
        out.loss.backward()
    grads = {m: {n: p.grad for n, p in modules[m].model.named_parameters()} for m in modules}
    last = f"model.layers.{config['model_config']['num_hidden_layers'] - 1}."
    same = [
        "lm_head.weight",
        "model.norm.weight",
        *(
            last + n
            for n in (
                "mlp.gate_proj.weight",
                "mlp.up_proj.weight",
                "mlp.down_proj.weight",
                "post_attention_layernorm.weight",
                "self_attn.o_proj.weight",
                "self_attn.q_proj.weight",
                "self_attn.k_proj.weight",
            )
        ),
    ]
    for name in same:
        assert torch.equal(grads["off"][name], grads["backward"][name]), name
    for name in [n for n in grads["off"] if n.endswith("v_proj.weight")] + ["model.embed_tokens.weight"]:
        assert not torch.equal(grads["off"][name], grads["backward"][name]), name
    hp = modules["off"].hparams
    for module in modules.values():
        optimizer, _ = build_optimizer(
            module.model, hp.lr, hp.min_lr, hp.warmup_steps, 100, hp.weight_decay, tuple(hp.betas), hp.eps
        )
        optimizer.step()
    with torch.no_grad():
        assert not torch.equal(off(input_ids=ids).logits, back(input_ids=ids).logits)


def test_a_backward_run_logs_the_baseline_loss_at_step_0_and_diverges_after(baseline, tmp_path):
    """Through the Trainer: the backward run's first loss is the baseline's, bit for bit (the same
    seed gives the same weights and rows), and its later losses differ (the updates differ)."""
    _, run = baseline
    train(
        tmp_path,
        "--model.vscale=backward",
        "--trainer.max_steps=3",
        "--trainer.callbacks=[]",
        *SEED,
        *CONSTANT_LR,
        *LOG_EVERY_STEP,
        config="configs/bb.yaml",
    )
    off, back = metrics(run, "train/loss"), metrics(tmp_path / "bb" / "backward-seed3", "train/loss")
    assert back[0] == off[0]
    assert back[1] != off[1] and back[2] != off[2]
