"""`eval.py interpolate`: attention or MLP, which makes the plateaus and cliffs along a path in the residual stream."""

import json
from pathlib import Path

from tqdm import tqdm

from vscale.cli_values import Ints, Strings, as_list
from vscale.data import load_tokenizer
from vscale.eval import plots
from vscale.eval.checkpoints import labels_for, load_all
from vscale.eval.probes.interpolate import check_path, check_targets, interpolate as interpolate_path
from vscale.model import check_model
from vscale.errors import ConfigError


def interpolate(ckpt: Strings | None = None, label: Strings | None = None, out: str = "interpolate", prompts: Strings | None = None,
                tokens: Strings | None = None, layer: int = 0, position: int = -1, steps: int = 21, tokenizer: str | None = None,
                targets: Ints = [0], align_keys: list[int] | None = None):
    """Interpolate one position's residual stream between two vectors at the input of a layer and
    record, along the path, each head's attention output, its attention to token 0, the MLP output
    and the layer output: where do plateaus and cliffs come from, attention or MLP? Writes
    interpolate.json and interpolation.png into `out` (vscale.eval.probes.interpolate); give the baseline
    and V-scale checkpoints together to compare them.

    Args:
        ckpt: Checkpoints: a train.py .ckpt, or a Hugging Face model directory or hub name.
        label: One label per checkpoint (default: the checkpoint paths).
        out: Output directory.
        prompts: Two prompts A and B (the vectors are their residuals at --position; the path runs in A's context), or, with --tokens, one prompt. Quote prompts holding commas: '["a, b", "c"]'.
        tokens: Two single tokens put in turn at --position of the one prompt (two tokens, same context), e.g. '[" cat", " dog"]'.
        layer: Decoder layer (0-based) whose input is interpolated and whose heads and MLP are recorded.
        position: Token position (negative counts from the end of each prompt).
        steps: Points on the path, alpha = 0..1 (at least 2).
        tokenizer: Tokenizer (default: the first .ckpt's training tokenizer, or the model directory's own).
        targets: Positions of prompt A whose attention from the interpolated position is recorded along the path (the full
            attention row to them, per head; negative counts from the end), e.g. [0, 3] for token 0 and the token a plateau
            moves between.
        align_keys: Two positions of the one prompt: the ends of the path are then residuals whose query points, in every
            head, at the key of each (the query turns from one key to the other), instead of residuals of two prompts.
    """
    ckpt, label, prompts, tokens, targets = map(as_list, (ckpt, label, prompts, tokens, targets))
    labels = labels_for(ckpt, label)
    if align_keys is not None and (len(align_keys) != 2 or tokens is not None or not prompts or len(prompts) != 1):
        raise ConfigError(f"--align_keys {align_keys}: give two key positions and one prompt (no --tokens), e.g. --prompts \"[The cat sat on the mat]\" --align_keys \"[0, 2]\".")
    if tokens is not None and (len(tokens) != 2 or not prompts or len(prompts) != 1):
        raise ConfigError(f'--tokens {tokens} / --prompts {prompts}: with --tokens give exactly two tokens and one prompt, e.g. --prompts "[The cat sat]" --tokens \'[" cat", " dog"]\' --position 1.')
    if tokens is None and align_keys is None and (not prompts or len(prompts) != 2):
        raise ConfigError(f'--prompts {prompts}: give two prompts, e.g. --prompts "[The cat sat on the, The dog sat on the]" (or one prompt and two --tokens).')
    loaded = load_all(ckpt, labels)
    first = next(iter(loaded.values()))
    source = tokenizer or (first.data or {}).get("tokenizer") or first.path
    tok = load_tokenizer(source, "--tokenizer")
    ids = _endpoints(tok, source, prompts * 2 if align_keys else prompts, tokens, position)
    for x in loaded.values():
        check_model(x.model.config, f"checkpoint {x.path!r}", tok, "--tokenizer", {"--prompts": max(map(len, ids))})
        check_path(x.model.config.num_hidden_layers, layer, steps, {"prompt A": (position, len(ids[0])), "prompt B": (position, len(ids[1]))})
    check_targets(targets, len(ids[0]))
    check_targets(align_keys or [0], len(ids[0]), "--align_keys")

    result = {"prompts": prompts, "tokens": tokens, "tokenizer": source, "layer": layer, "position": position, "steps": steps, "targets": targets,
              "align_keys": align_keys, "checkpoints": {}}
    for name, x in tqdm(loaded.items(), desc="checkpoints"):
        result["checkpoints"][name] = {"path": x.path, "vscale": x.vscale, **interpolate_path(x.model, ids[0], ids[1], layer, position, steps, targets, align_keys)}
    out_dir = Path(out)
    figure = plots.interpolation(result["checkpoints"], out_dir / "interpolation.png")
    result["figures"] = [figure.name]
    (out_dir / "interpolate.json").write_text(json.dumps(result, indent=1))
    for name, c in result["checkpoints"].items():
        heads = [h["steepest"] for h in c["heads"] if h["steepest"] is not None]
        print(f"{name}: steepest step (1 = linear) attention heads {max(heads, default=float('nan')):.3g}, MLP {c['mlp']['steepest'] or float('nan'):.3g}")
    print(f"wrote {out_dir / 'interpolate.json'} and {figure}")
    return result


def _endpoints(tok, source: str, prompts: list[str], tokens: list[str] | None, position: int) -> list[list[int]]:
    """Token ids of prompts A and B: the two prompts, or the one prompt with each token at `position`."""
    encode = lambda text: tok.encode(text, add_special_tokens=False)  # no <bos>, as in training (method §1)
    if tokens is None:
        return [encode(p) for p in prompts]
    context, pieces = encode(prompts[0]), [encode(t) for t in tokens]
    if any(len(p) != 1 for p in pieces):
        raise ConfigError(f"--tokens {tokens}: each must be one token of {source!r}; they encode to {pieces}. Include the leading space the tokenizer expects.")
    if not -len(context) <= position < len(context):
        raise ConfigError(f"--position {position}: the prompt has {len(context)} tokens; give a position in {-len(context)}..{len(context) - 1}.")
    return [context[:position % len(context)] + p + context[position % len(context) + 1 :] for p in pieces]
