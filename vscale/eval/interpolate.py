"""`eval.py interpolate`: attention or MLP, which makes the plateaus and cliffs along a path in the residual stream."""

import json
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from vscale.cli_values import Ints, Strings, as_list
from vscale.data import load_tokenizer
from vscale.errors import ConfigError
from vscale.eval import plots
from vscale.eval.checkpoints import load_all
from vscale.eval.options import Checkpoints
from vscale.eval.probes.interpolate import check_path, check_targets, interpolate as interpolate_path
from vscale.model import check_model


@dataclass
class InterpolateOptions(Checkpoints):
    """Interpolate one position's residual stream between two vectors at the input of a layer and
    record, along the path, each head's attention output, its attention to token 0, the MLP output
    and the layer output: where do plateaus and cliffs come from, attention or MLP? Writes
    interpolate.json and interpolation.png into `out` (vscale.eval.probes.interpolate); give the baseline
    and V-scale checkpoints together to compare them.

    Args:
        prompts: Two prompts A and B (the vectors are their residuals at --position; the path runs in A's context), or,
            with --tokens, one prompt. Quote prompts holding commas: '["a, b", "c"]'.
        tokens: Two single tokens put in turn at --position of the one prompt (two tokens, same context), e.g.
            '[" cat", " dog"]'.
        layer: Decoder layer (0-based) whose input is interpolated and whose heads and MLP are recorded.
        position: Token position (negative counts from the end of each prompt).
        steps: Points on the path, alpha = 0..1 (at least 2).
        tokenizer: Tokenizer (default: the first .ckpt's training tokenizer, or the model directory's own).
        targets: Positions of prompt A whose attention from the interpolated position is recorded along the path (the
            full attention row to them, per head; negative counts from the end), e.g. [0, 3] for token 0 and the token a
            plateau moves between.
        align_keys: Two positions of the one prompt: the ends of the path are then residuals whose query points, in
            every head, at the key of each (the query turns from one key to the other), instead of residuals of two
            prompts.
    """

    out: str = "interpolate"
    prompts: Strings | None = None
    tokens: Strings | None = None
    layer: int = 0
    position: int = -1
    steps: int = 21
    tokenizer: str | None = None
    targets: Ints = field(default_factory=lambda: [0])
    align_keys: list[int] | None = None

    def __post_init__(self):
        super().__post_init__()
        self.prompts, self.tokens, self.targets = map(as_list, (self.prompts, self.tokens, self.targets))
        prompts, tokens, align_keys = self.prompts, self.tokens, self.align_keys
        if align_keys is not None and (len(align_keys) != 2 or tokens is not None or not prompts or len(prompts) != 1):
            raise ConfigError(
                f"--align_keys {align_keys}: give two key positions and one prompt (no --tokens), "
                'e.g. --prompts "[The cat sat on the mat]" --align_keys "[0, 2]".'
            )
        if tokens is not None and (len(tokens) != 2 or not prompts or len(prompts) != 1):
            raise ConfigError(
                f"--tokens {tokens} / --prompts {prompts}: with --tokens give exactly two tokens and one prompt, "
                'e.g. --prompts "[The cat sat]" --tokens \'[" cat", " dog"]\' --position 1.'
            )
        if tokens is None and align_keys is None and (not prompts or len(prompts) != 2):
            raise ConfigError(
                f'--prompts {prompts}: give two prompts, e.g. --prompts "[The cat sat on the, '
                'The dog sat on the]" (or one prompt and two --tokens).'
            )


def interpolate(o: InterpolateOptions) -> dict:
    """`InterpolateOptions`: the path through every checkpoint, written with its figure."""
    loaded = load_all(o.ckpt, o.labels)
    first = next(iter(loaded.values()))
    source = o.tokenizer or (first.data or {}).get("tokenizer") or first.path
    tok = load_tokenizer(source, "--tokenizer")
    ids = _endpoints(tok, source, o.prompts * 2 if o.align_keys else o.prompts, o.tokens, o.position)
    for x in loaded.values():
        check_model(x.model.config, f"checkpoint {x.path!r}", tok, "--tokenizer", {"--prompts": max(map(len, ids))})
        check_path(
            x.model.config.num_hidden_layers,
            o.layer,
            o.steps,
            {"prompt A": (o.position, len(ids[0])), "prompt B": (o.position, len(ids[1]))},
        )
    check_targets(o.targets, len(ids[0]))
    check_targets(o.align_keys or [0], len(ids[0]), "--align_keys")

    result = {
        "prompts": o.prompts,
        "tokens": o.tokens,
        "tokenizer": source,
        "layer": o.layer,
        "position": o.position,
        "steps": o.steps,
        "targets": o.targets,
        "align_keys": o.align_keys,
        "checkpoints": {},
    }
    for name, x in tqdm(loaded.items(), desc="checkpoints"):
        path = interpolate_path(x.model, ids[0], ids[1], o.layer, o.position, o.steps, o.targets, o.align_keys)
        result["checkpoints"][name] = {"path": x.path, "vscale": x.vscale, **path}
    out_dir = Path(o.out)
    figure = plots.interpolation(result["checkpoints"], out_dir / "interpolation.png")
    result["figures"] = [figure.name]
    (out_dir / "interpolate.json").write_text(json.dumps(result, indent=1))
    for name, c in result["checkpoints"].items():
        heads = [h["steepest"] for h in c["heads"] if h["steepest"] is not None]
        print(
            f"{name}: steepest step (1 = linear) attention heads {max(heads, default=float('nan')):.3g}, "
            f"MLP {c['mlp']['steepest'] or float('nan'):.3g}"
        )
    print(f"wrote {out_dir / 'interpolate.json'} and {figure}")
    return result


def _endpoints(tok, source: str, prompts: list[str], tokens: list[str] | None, position: int) -> list[list[int]]:
    """Token ids of prompts A and B: the two prompts, or the one prompt with each token at `position`."""
    encode = lambda text: tok.encode(text, add_special_tokens=False)  # no <bos>, as in training (method §1)
    if tokens is None:
        return [encode(p) for p in prompts]
    context, pieces = encode(prompts[0]), [encode(t) for t in tokens]
    if any(len(p) != 1 for p in pieces):
        raise ConfigError(
            f"--tokens {tokens}: each must be one token of {source!r}; "
            f"they encode to {pieces}. Include the leading space the tokenizer expects."
        )
    if not -len(context) <= position < len(context):
        raise ConfigError(
            f"--position {position}: the prompt has {len(context)} tokens; "
            f"give a position in {-len(context)}..{len(context) - 1}."
        )
    return [context[: position % len(context)] + p + context[position % len(context) + 1 :] for p in pieces]
