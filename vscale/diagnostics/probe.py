"""Capture the tensors of method §3 (docs/method.md) from a live forward and backward.

`Probe` registers hooks only inside its `with` block, so steps without diagnostics run the model
untouched; after the backward, `Probe.sums()` gives every per-token quantity summed over the rows
of the batch (pooled by `vscale.diagnostics.pooling`). Nothing read after the backward depends on
how parameters are stored: the q/k/v path terms are the gradients reaching a per-projection alias
of the attention input, and lambda is read while V-scale runs, so diagnostics work unchanged under
FSDP. Measurements are detached when taken, so nothing holds a step's autograd graph.
"""

import torch
from torch import nn

from vscale.diagnostics import metrics
from vscale.errors import ConfigError
from vscale.model.install import vscale_modules
from vscale.model.pipeline import TAP, decoder_layers, is_routed

GRADS = ("dh", "dh_tilde", "dh_half", "dh_tilde_half", "dh_out", "dq", "dk", "dv")


def _norms(x: torch.Tensor, n: int) -> torch.Tensor:
    """||x_t|| of the first n positions, detached, in float32: (..., tokens, dim) -> (..., n)."""
    return x[..., :n, :].detach().float().norm(dim=-1)


class Probe:
    """Hooks on every decoder layer, live only between __enter__ and __exit__."""

    def __init__(self, model: nn.Module, all_token_norms: bool = False):
        if not is_routed(model):
            raise ConfigError(
                "diagnostics tap the attention pipeline: "
                "call vscale.apply_interventions(model) first (vscale.diagnose does it for you)."
            )
        self.all_token_norms = all_token_norms
        self.layers = decoder_layers(model)
        self.records: list[dict[str, torch.Tensor]] = [{} for _ in self.layers]
        self._handles: list = []
        self._stance = None

    def __enter__(self) -> "Probe":
        self._stance = torch.compiler.set_stance(
            "force_eager"
        )  # a compiled model runs eagerly while probed: hooks are not traced
        self._handles.append(self.layers[0].input_layernorm.register_forward_pre_hook(self._track_input_grad))
        for layer, rec in zip(self.layers, self.records):
            self._hook_layer(layer, rec)
            setattr(layer.self_attn, TAP, self._tap(rec))
            for scaler in vscale_modules(layer):  # read while V-scale runs: under FSDP theta is whole only then
                if scaler.mode == "learned":
                    self._handles.append(
                        scaler.register_forward_hook(
                            lambda m, args, out, rec=rec: rec.__setitem__("lambda", m.lambdas())
                        )
                    )
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for layer in self.layers:
            if hasattr(layer.self_attn, TAP):
                delattr(layer.self_attn, TAP)
        if self._stance is not None:
            self._stance.__exit__(None, None, None)
            self._stance = None

    @staticmethod
    def _track_input_grad(module, args) -> None:
        """With frozen embeddings (and frozen early layers) nothing below the first trainable
        parameter has a gradient; asking for the stack input's makes every gradient method §3
        needs exist. Parameter gradients are unchanged."""
        if torch.is_grad_enabled() and not args[0].requires_grad:
            args[0].requires_grad_(True)

    def _hook_layer(self, layer: nn.Module, rec: dict) -> None:
        n_act, n_grad = metrics.EARLY + 1, metrics.WINDOW

        def keep_grad(tensor: torch.Tensor, key: str, n: int) -> None:
            """Keep a copy of the first n positions of the gradient, not a view of all of it."""
            if tensor.requires_grad:
                tensor.register_hook(lambda g: rec.__setitem__(key, g[:, :n].detach().clone()))

        def attn_norm(module, args, out):
            rec["act/h"] = _norms(args[0], n_act)
            keep_grad(args[0], "dh", n_act)
            keep_grad(out, "dh_tilde", n_grad)
            if self.all_token_norms and out.requires_grad:
                out.register_hook(lambda g: rec.__setitem__("g_norms", g.detach().float().norm(dim=-1)))

        def mlp_norm(module, args, out):
            rec["act/h_half"] = _norms(args[0], n_act)
            keep_grad(args[0], "dh_half", n_act)
            keep_grad(out, "dh_tilde_half", n_act)

        def block(module, args, out):
            out = out[0] if isinstance(out, tuple) else out
            rec["act/h_out"] = _norms(out, n_act)
            keep_grad(out, "dh_out", n_act)

        def path_alias(path: str):
            """The projection reads its own view of h~: the gradient reaching that view is this
            path's term W^T dL/d(projection output) of G, with no weight read after backward."""

            def pre_hook(module, args):
                if not args[0].requires_grad:
                    return None
                alias = args[0].view_as(args[0])
                keep_grad(alias, f"d{path}", n_grad)
                return (alias, *args[1:])

            return pre_hook

        attn = layer.self_attn
        for module, hook in (
            (layer.input_layernorm, attn_norm),
            (layer.post_attention_layernorm, mlp_norm),
            (layer, block),
            (attn, lambda m, a, out: rec.__setitem__("act/r_attn", _norms(out[0], n_act))),
            (layer.mlp, lambda m, a, out: rec.__setitem__("act/r_mlp", _norms(out, n_act))),
        ):
            self._handles.append(module.register_forward_hook(hook))
        for path in metrics.PATHS:
            self._handles.append(getattr(attn, f"{path}_proj").register_forward_pre_hook(path_alias(path)))

    @staticmethod
    def _tap(rec: dict):
        """The pipeline's first stage on a measured step: the weights the layer's arm puts on token 0
        (and on no token), and the values before V-scale."""

        def tap(arm, query, key, value, scaling):
            a0, extra = arm.token0(query, key, scaling)
            rec.update({f"sink/{k}": v for k, v in metrics.sink_row_sums(a0).items()})
            if extra is not None:
                rec["sink/extra"] = extra.mean(-1).sum(0)
            rec["act/v"] = value[:, :, : metrics.EARLY + 1].detach().float().norm(dim=-1).mean(1)

        return tap

    def sums(self, grad_scale: float = 1.0) -> dict[str, torch.Tensor]:
        """Every per-token quantity summed over the batch's rows, (layers, ...) each, plus `rows`.
        `grad_scale` undoes a loss scaling (gradient accumulation), so gradients refer to the
        micro-batch's mean loss."""
        missing = {"sink/alpha", *GRADS} - set().union(*self.records)
        if missing:
            raise RuntimeError(
                f"diagnostics saw no forward/backward for {sorted(missing)}: run the loss's backward inside the probe."
            )
        stack = lambda key: torch.stack([rec[key] for rec in self.records])
        g = {k: stack(k).float() * grad_scale for k in GRADS}  # (layers, rows, positions, dim)
        n = metrics.EARLY + 1
        out = {"rows": torch.tensor(float(g["dh"].shape[1]), device=g["dh"].device)}
        out.update({f"sink/{k}": stack(f"sink/{k}") for k in ("alpha", "mass", "m2", "m0", "s0")})
        out.update({f"act/{a}": stack(f"act/{a}").sum(1) for a in metrics.ACTIVATIONS})
        out["grad/g"] = _norms(g["dh_tilde"], metrics.WINDOW).sum(1)
        out["grad/g_sum"] = g["dh_tilde"].sum(1)
        out.update({f"grad/{p}": _norms(g[f"d{p}"], metrics.WINDOW).sum(1) for p in metrics.PATHS})
        branches = {
            "attn": (g["dh_half"], g["dh_tilde"][:, :, :n], g["dh"] - g["dh_half"]),
            "mlp": (g["dh_out"], g["dh_tilde_half"], g["dh_half"] - g["dh_out"]),
        }
        for branch, (g1, g2, g3) in branches.items():
            for name, x in (("g1", g1), ("g2", g2), ("g3", g3), ("g13", g1 + g3)):
                out[f"reshape/{branch}_{name}"] = _norms(x, n).sum(1)
        for optional in ("lambda", "sink/extra"):
            if all(optional in rec for rec in self.records):
                out[optional] = stack(optional)
        return out
