"""The formulas of method §3 (docs/method.md), each in one place.

Order of statistics: every per-token quantity (a norm at a position, an attention weight, a
gradient vector) arrives as a sum over rows, pooled over micro-batches, batches and ranks, with
the number of rows (`vscale.diagnostics.Pooled`). Means over rows are taken first; thresholds,
ratios and medians over layers come last, here. Tensors carry the layers as leading dim, so one
call covers every layer.
"""

import math

import torch

T_E = 31  # early window for gradients: tokens 1..T_E
EARLY = 15  # early rest for activations and reshaping: tokens 1..EARLY
EPS = 0.3  # sink threshold on alpha
T_EPS = 64  # queries averaged in alpha
WINDOW = T_E + 1  # positions the gradient metrics read, token 0 included

ACTIVATIONS = ("h", "h_half", "h_out", "r_attn", "r_mlp", "v")
PATHS = ("q", "k", "v")
BRANCHES = ("attn", "mlp")


def t0_and_early(mean: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., positions) row means -> the token-0 value and the mean over tokens 1..window."""
    return mean[..., 0], mean[..., 1 : window + 1].mean(-1)


def t0_and_ratio(mean_norms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-0 norm and token-0 / early-rest ratio (the early rest: mean norm over tokens 1..15)."""
    t0, early = t0_and_early(mean_norms, EARLY)
    return t0, t0 / early


def gradient_sink_ratio(mean_norms: torch.Tensor) -> torch.Tensor:
    """R_GS = mean_b ||G_b0|| / ((1/T_e) sum_{t=1..T_e} mean_b ||G_bt||)."""
    t0, early = t0_and_early(mean_norms, T_E)
    return t0 / early


def gradient_sink_ratio_summed(summed: torch.Tensor) -> torch.Tensor:
    """The paper's variant: gradients summed over the rows before the norm,
    ||sum_b G_b0|| / ((1/T_e) sum_t ||sum_b G_bt||); (..., positions, dim) sums."""
    return gradient_sink_ratio(summed.norm(dim=-1))


def sink_row_sums(a0: torch.Tensor) -> dict[str, torch.Tensor]:
    """From a_t0 (batch, heads, tokens): per head, the sums over rows of alpha_h = mean_{t<T_eps}
    a_t0, of M_0 = sum_t a_t0 and S_0 = sum_t a_t0^2, and of M_0/T and S_0/T."""
    T = a0.shape[-1]
    m0, s0 = a0.sum(-1).sum(0), a0.pow(2).sum(-1).sum(0)
    return {"alpha": a0[..., :T_EPS].mean(-1).sum(0), "m0": m0, "s0": s0, "mass": m0 / T, "m2": s0 / T}


def sink(
    alpha: torch.Tensor, mass: torch.Tensor, m2: torch.Tensor, m0: torch.Tensor, s0: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-head row means (..., heads) of alpha_h = mean_{t<T_eps} a_t0, M_0/T, S_0/T, M_0 and S_0
    -> the layer's sink rate (fraction of heads with alpha_h > eps) and head means."""
    return {
        "alpha": alpha.mean(-1),
        "rate": (alpha > EPS).float().mean(-1),
        "mass": mass.mean(-1),
        "m2": m2.mean(-1),
        "m0": m0.mean(-1),
        "s0": s0.mean(-1),
    }


def reshaping(g1: torch.Tensor, g2: torch.Tensor, g3: torch.Tensor, g13: torch.Tensor) -> dict[str, torch.Tensor]:
    """Row-mean norms per position of g1, g2, g3 and g1 + g3 -> Bloat = ||g2||/||g1||,
    Compress = ||g3||/||g2||, Change = ||g1+g3||/||g1|| at token 0 and averaged over 1..15."""
    out = {}
    for name, ratio in (("bloat", g2 / g1), ("compress", g3 / g2), ("change", g13 / g1)):
        out[f"{name}_t0"], out[f"{name}_early"] = t0_and_early(ratio, EARLY)
    return out


def per_layer(means: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every metric of method §3 as a (layers,) tensor, from row means of the per-token
    quantities (`Pooled.means()`); `lambda` (layers, kv heads) is present for learned V-scale."""
    out = {f"sink/{k}": v for k, v in sink(*(means[f"sink/{k}"] for k in ("alpha", "mass", "m2", "m0", "s0"))).items()}
    for name in ACTIVATIONS:
        out[f"act/{name}_t0"], out[f"act/{name}_ratio"] = t0_and_ratio(means[f"act/{name}"])
    out["gsink/ratio"] = gradient_sink_ratio(means["grad/g"])
    out["gsink/ratio_summed"] = gradient_sink_ratio_summed(means["grad/g_sum"])
    out["gsink/g_t0"], out["gsink/g_early"] = t0_and_early(means["grad/g"], T_E)
    for path in PATHS:
        out[f"gsink/{path}_t0"], out[f"gsink/{path}_early"] = t0_and_early(means[f"grad/{path}"], T_E)
    for branch in BRANCHES:
        parts = (means[f"reshape/{branch}_{g}"] for g in ("g1", "g2", "g3", "g13"))
        out.update({f"reshape/{branch}_{k}": v for k, v in reshaping(*parts).items()})
    if "sink/extra" in means:
        out["sink/extra_mass"] = means["sink/extra"].mean(-1)
    if "lambda" in means:
        lam = means["lambda"]
        out["vscale/lambda_min"], out["vscale/lambda_median"], out["vscale/lambda_max"] = (
            lam.min(-1).values,
            lam.quantile(0.5, dim=-1),
            lam.max(-1).values,
        )
    return out


def summarise(per_layer: torch.Tensor) -> dict[str, torch.Tensor]:
    """Across-layer mean, median, max and IQR of a (quantities, layers) tensor, each (quantities,),
    over the layers where the quantity is defined: a layer whose attention gives no token any
    weight (softpick can) has no gradient at tokens 0..T_e and R_GS = 0/0 there. NaN where no layer has it."""
    x = per_layer.float()
    q25, median, q75 = torch.nanquantile(x, torch.tensor([0.25, 0.5, 0.75], device=x.device), dim=1)
    undefined = x.isnan()
    top = x.masked_fill(undefined, -math.inf).max(1).values.masked_fill(undefined.all(1), math.nan)
    return {"mean": x.nanmean(1), "median": median, "max": top, "iqr": q75 - q25}
