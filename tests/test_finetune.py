"""Fine-tuning a saved pretrained model with V-scale retrofitted: every mode on Llama and Qwen3,
exact resume, loss on chat replies only, and frozen parameters that stay bit-identical."""

import pytest
import torch
from conftest import metrics, save_tiny_pretrained, train
from transformers import AutoModelForCausalLM, AutoTokenizer

from vscale.data.chat import IGNORE, chat_tokens, set_chat_template
from vscale.train.module import VScaleLM

CONFIG = "configs/finetune-tiny.yaml"
FAST = [
    "--trainer.log_every_n_steps=1",
    "--run.val_every_n_steps=1000",
    "--trainer.num_sanity_val_steps=0",
    "--data.batch_size=4",
]


@pytest.fixture(scope="module", params=["llama", "qwen3"])
def pretrained(request, tmp_path_factory):
    return save_tiny_pretrained(tmp_path_factory.mktemp(request.param), request.param)


def finetune(root, pretrained, *overrides: str):
    return train(
        root, f"--model.pretrained={pretrained}", f"--data.tokenizer={pretrained}", *FAST, *overrides, config=CONFIG
    )


def weights(state: dict) -> dict[str, torch.Tensor]:
    return {k.removeprefix("model."): v for k, v in state.items() if not k.endswith("vscale.theta")}


@pytest.mark.parametrize("mode", ["off", "fixed", "learned", "backward"])
def test_finetuning_a_saved_model_trains_in_every_mode(tmp_path, pretrained, mode):
    cli = finetune(tmp_path, pretrained, f"--model.vscale={mode}", "--trainer.max_steps=4")
    loss = metrics(tmp_path / "finetune-tiny" / f"{mode}-seed0", "train/loss")
    assert sorted(loss) == [0, 1, 2, 3] and all(torch.isfinite(torch.tensor(list(loss.values()))))
    start = AutoModelForCausalLM.from_pretrained(pretrained).state_dict()
    tuned = weights(cli.model.state_dict())
    assert not torch.equal(
        tuned["model.layers.0.self_attn.v_proj.weight"], start["model.layers.0.self_attn.v_proj.weight"]
    )
    thetas = [v for k, v in cli.model.state_dict().items() if k.endswith("vscale.theta")]
    assert (len(thetas) == 2 and all(t.abs().max() > 0 for t in thetas)) if mode == "learned" else not thetas


def test_a_resumed_finetune_continues_exactly(tmp_path, pretrained):
    common = ["--model.vscale=learned", "--run.ckpt_every=3"]
    finetune(tmp_path / "straight", pretrained, "--trainer.max_steps=6", *common)
    finetune(tmp_path / "resumed", pretrained, "--trainer.max_steps=3", *common)
    finetune(tmp_path / "resumed", pretrained, "--trainer.max_steps=6", "--ckpt_path=last", *common)
    straight = metrics(tmp_path / "straight" / "finetune-tiny" / "learned-seed0", "train/loss")
    resumed = metrics(tmp_path / "resumed" / "finetune-tiny" / "learned-seed0", "train/loss")
    assert sorted(resumed) == list(range(6))
    for step in range(3, 6):
        assert resumed[step] == pytest.approx(straight[step], rel=1e-6, abs=1e-6), step


@pytest.mark.parametrize("trainable", [["*.vscale.theta"], ["*.self_attn.*"]], ids=["theta", "attention"])
def test_freezing_leaves_every_other_weight_bit_identical(tmp_path, pretrained, trainable):
    cli = finetune(
        tmp_path, pretrained, "--model.vscale=learned", "--trainer.max_steps=3", f"--model.trainable={trainable}"
    )
    start = AutoModelForCausalLM.from_pretrained(pretrained).state_dict()
    tuned = cli.model.state_dict()
    changed = {k for k, v in weights(tuned).items() if not torch.equal(v, start[k])}
    if trainable == ["*.vscale.theta"]:
        assert changed == set()
    else:
        assert changed and all(".self_attn." in k for k in changed)
        assert "model.layers.1.self_attn.o_proj.weight" in changed
    assert all(v.abs().max() > 0 for k, v in tuned.items() if k.endswith("vscale.theta"))


def test_a_trainable_pattern_that_matches_nothing_is_refused(pretrained):
    with pytest.raises(ValueError, match=r"model.trainable=\['\*.mlp_typo.\*'\] matches no parameter"):
        VScaleLM(pretrained=str(pretrained), trainable=["*.mlp_typo.*"])


@pytest.fixture(scope="module")
def chat_tokenizer():
    tokenizer = AutoTokenizer.from_pretrained("assets/tokenizer-tiny")
    set_chat_template(tokenizer, "assets/chat_template.jinja")
    return tokenizer


CHAT = [
    {"role": "user", "content": "What does json.dumps do?"},
    {"role": "assistant", "content": "It serializes an object."},
    {"role": "user", "content": "And json.loads?"},
    {"role": "assistant", "content": "The reverse."},
]


def test_only_the_replies_are_labelled_in_a_chat(chat_tokenizer):
    ids, labels = chat_tokens(chat_tokenizer, CHAT)
    assert len(ids) == len(labels)
    assert chat_tokenizer.decode([t for t in labels if t != IGNORE]) == "It serializes an object.\nThe reverse.\n"
    prompt = chat_tokenizer.decode([t for t, l in zip(ids, labels) if l == IGNORE])
    assert prompt == "<|user|>\nWhat does json.dumps do?\n<|assistant|>\n<|user|>\nAnd json.loads?\n<|assistant|>\n"


def test_the_chat_loss_is_the_cross_entropy_of_the_reply_tokens_only(chat_tokenizer, pretrained):
    ids, labels = chat_tokens(chat_tokenizer, CHAT)
    ids, labels = torch.tensor([ids]), torch.tensor([labels])
    module = VScaleLM(pretrained=str(pretrained))
    logits = module(ids)[0, :-1]
    targets = ids[0, 1:]
    reply = labels[0, 1:] != IGNORE
    by_hand = torch.nn.functional.cross_entropy(logits[reply], targets[reply])
    assert module.loss([ids, labels]).item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert module.loss(ids).item() != pytest.approx(by_hand.item(), rel=1e-3)


def test_chat_data_needs_a_chat_template(pretrained):
    from vscale.data import PackedTextData

    with pytest.raises(ValueError, match="data.chat_template: tokenizer .* has no chat template"):
        PackedTextData(tokenizer=str(pretrained), train_files=["data/tiny/chat-train.jsonl"], messages_field="messages")


def test_a_chat_finetune_checkpoint_evaluates_on_its_own_chat_data(tmp_path, pretrained):
    from vscale.eval import cli as eval_cli
    from vscale.eval.run import RunOptions

    finetune(tmp_path, pretrained, "--model.vscale=learned", "--trainer.max_steps=2")
    ckpt = tmp_path / "finetune-tiny" / "learned-seed0" / "checkpoints" / "last.ckpt"
    results = eval_cli.run(
        RunOptions([str(ckpt)], out=str(tmp_path / "eval"), quant=[], batches=1, needle_context_lens=[])
    )
    assert results["checkpoints"][str(ckpt)]["results"]["perplexity"]["loss"] > 0


def test_a_local_pair_trains_both_modes_on_the_same_batches(tmp_path):
    """`backward` has the forward of `off`, so with the same data order their first losses agree exactly."""
    from vscale.launch.sweep import main

    pretrained = save_tiny_pretrained(tmp_path / "pretrained")
    main(
        [
            "--config",
            CONFIG,
            "--gpus-per-node",
            "0",
            "--modes",
            "off",
            "backward",
            "--seeds",
            "0",
            "--local",
            "--",
            f"--run.root={tmp_path}",
            f"--model.pretrained={pretrained}",
            f"--data.tokenizer={pretrained}",
            *FAST,
            "--trainer.max_steps=2",
            "--trainer.enable_progress_bar=false",
        ]
    )
    off = metrics(tmp_path / "finetune-tiny" / "off-seed0", "train/loss")
    backward = metrics(tmp_path / "finetune-tiny" / "backward-seed0", "train/loss")
    assert sorted(off) == sorted(backward) == [0, 1]
    assert off[0] == backward[0]


def test_a_pretrained_model_is_built_in_train_mode(pretrained):
    """from_pretrained returns a model in eval mode, where dropout would silently stay off."""
    model = VScaleLM(pretrained=str(pretrained), vscale="learned")
    assert [name for name, m in model.named_modules() if not m.training] == []


def test_a_finetune_starts_training_with_no_module_in_eval_mode(tmp_path, pretrained, recwarn):
    finetune(tmp_path, pretrained, "--trainer.max_steps=1")
    assert not [w for w in recwarn if "eval mode" in str(w.message)]
