"""model.embedding_std draws a fresh model's input embeddings from N(0, std^2) and leaves every other weight as the
model's own initialisation drew it (Guo et al.'s models start from PyTorch's default N(0, 1) embeddings)."""

import pytest
import torch

from vscale.train.module import VScaleLM

CONFIG = {
    "model_type": "llama",
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
    "tie_word_embeddings": False,
}


def build(**kwargs) -> VScaleLM:
    torch.manual_seed(0)
    return VScaleLM(model_config=CONFIG, **kwargs)


@pytest.mark.parametrize("std", [0.5, 1.0])
def test_embeddings_are_drawn_with_the_given_std(std):
    weight = build(embedding_std=std).model.get_input_embeddings().weight.detach()
    assert weight.mean().item() == pytest.approx(0, abs=0.01 * std)
    assert weight.std().item() == pytest.approx(std, rel=0.02)  # 32,768 draws: the sample std is within 0.4% of std


def test_default_keeps_the_config_initializer_range():
    weight = build().model.get_input_embeddings().weight.detach()
    assert weight.std().item() == pytest.approx(0.02, rel=0.02)


def test_only_the_input_embeddings_change():
    plain, scaled = build().model.state_dict(), build(embedding_std=1.0).model.state_dict()
    changed = [name for name in plain if not torch.equal(plain[name], scaled[name])]
    assert changed == ["model.embed_tokens.weight"]
