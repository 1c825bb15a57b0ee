"""Saving and loading a model with its interventions: a plain Hugging Face directory (loadable by
any HF tool) plus vscale.json and the arm's weights, which `from_pretrained` re-applies."""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, PreTrainedModel

from vscale.errors import ConfigError
from vscale.model.install import apply_attention, apply_vscale, attention_arm, vscale_modules

VSCALE_FILE = "vscale.json"
ARM_FILE = "attention_arm.safetensors"


def save_pretrained(model: PreTrainedModel, path, tokenizer=None) -> None:
    """A `from_pretrained` directory (the model's own weights, loadable by any HF tool) plus
    vscale.json (the V-scale mode, sigma, every layer's theta, and the attention arm) and the arm's
    parameters in attention_arm.safetensors, which `from_pretrained` below re-applies."""
    scalers = vscale_modules(model)
    state = model.state_dict()
    arm_weights = {k: v.contiguous() for k, v in state.items() if ".arm." in k}
    model.save_pretrained(path, state_dict={k: v for k, v in state.items() if ".vscale." not in k and ".arm." not in k})
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    attention = attention_arm(model)
    if scalers or attention != "softmax":
        info = {"attention": attention}
        if scalers:
            info |= {"mode": scalers[0].mode, "sigma": scalers[0].sigma, "theta": [s.theta.tolist() for s in scalers]}
        (Path(path) / VSCALE_FILE).write_text(json.dumps(info, indent=1))
    if arm_weights:
        save_file(arm_weights, str(Path(path) / ARM_FILE))


def from_pretrained(path: str, **kwargs) -> PreTrainedModel:
    """`AutoModelForCausalLM.from_pretrained`, then the interventions saved in the directory's
    vscale.json, if there is one (for a hub repo, `snapshot_download` it first)."""
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    file = Path(path) / VSCALE_FILE
    if not file.is_file():
        return model
    info = json.loads(file.read_text())
    apply_attention(model, info.get("attention", "softmax"))
    if "mode" in info:
        apply_vscale(model, info["mode"], sigma=info["sigma"])
        with torch.no_grad():
            for scaler, theta in zip(vscale_modules(model), info["theta"]):
                scaler.theta.copy_(torch.tensor(theta))
    if (Path(path) / ARM_FILE).is_file():
        missing, unexpected = model.load_state_dict(load_file(str(Path(path) / ARM_FILE)), strict=False)
        if unexpected or any(".arm." in k for k in missing):
            raise ConfigError(
                f"{path}: {ARM_FILE} does not match the {info['attention']!r} arm (unexpected {unexpected})."
            )
    return model
