"""A trained model from its weights and the model and intervention fields it was built with (a train.py
checkpoint's `state_dict` and `hyper_parameters`): what evaluation needs, without the training module
and its optimizer."""

from transformers import PreTrainedModel

from vscale.model.build import build_config, build_model
from vscale.model.checks import check_interventions
from vscale.model.install import install

PREFIX = "model."
"""Where the training module keeps the causal LM: its state dict names start with `model.`."""


def load_trained(state_dict: dict, hparams: dict, who: str = "the checkpoint") -> PreTrainedModel:
    """The causal LM of `hparams` (model_config or pretrained, vscale, vscale_lambda, attention,
    attn_implementation) with the interventions installed and every weight from `state_dict`, in float32.
    Only the config of a pretrained model is read: the weights are the state dict's."""
    config = build_config(hparams.get("model_config"), hparams.get("pretrained"))
    vscale, lam = hparams.get("vscale", "off"), hparams.get("vscale_lambda", 1.0)
    attention, kernel = hparams.get("attention", "softmax"), hparams.get("attn_implementation", "sdpa")
    check_interventions(config, vscale, lam, attention, kernel, who=who)
    model = install(build_model(config, None, kernel), vscale, attention, lam)
    model.load_state_dict({k.removeprefix(PREFIX): v for k, v in state_dict.items() if k.startswith(PREFIX)})
    return model
