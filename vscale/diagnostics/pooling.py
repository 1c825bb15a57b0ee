"""Pooling the probe's sums over micro-batches, batches and ranks (torchmetrics' distributed sum),
and evaluating the formulas of `metrics` once, at the end: method §3's order, means over rows
first, ratios, thresholds and layer summaries last."""

import torch
from torchmetrics import Metric

from vscale.diagnostics import metrics


class Pooled(Metric):
    """Sums of `Probe.sums()` over micro-batches, batches and ranks; `compute()` divides by the
    rows, then evaluates every formula once (method §3's order: means over rows first, ratios,
    thresholds and layer summaries last). lambda, which is not a per-row quantity, is averaged
    over updates.

    Args:
        sync: Sum over processes at compute (torchmetrics); False for a single process's measurement.
    """

    full_state_update = False

    def __init__(self, sync: bool = True):
        super().__init__(sync_on_compute=sync)
        self._names: list[str] = []

    @staticmethod
    def _attr(name: str) -> str:
        return "pooled_" + name.replace("/", "__")

    def update(self, sums: dict[str, torch.Tensor]) -> None:
        if not self._names:  # states take their shapes from the first measurement (the model's dims)
            for name in [*sums, "updates"]:
                self.add_state(self._attr(name), torch.zeros_like(sums.get(name, sums["rows"])), dist_reduce_fx="sum")
                self._names.append(name)
        for name, value in sums.items():
            setattr(
                self,
                self._attr(name),
                getattr(self, self._attr(name)) + value.detach().to(getattr(self, self._attr(name))),
            )
        setattr(self, self._attr("updates"), getattr(self, self._attr("updates")) + 1)

    def means(self) -> dict[str, torch.Tensor]:
        state = {name: getattr(self, self._attr(name)) for name in self._names}
        rows, updates = state.pop("rows"), state.pop("updates")
        out = {name: value / rows for name, value in state.items()}
        if "lambda" in state:
            out["lambda"] = state["lambda"] / updates
        return out

    def compute(self) -> dict[str, torch.Tensor]:
        return metrics.per_layer(self.means())


def flatten(per_layer: dict[str, torch.Tensor]) -> dict[str, float]:
    """`<group>/<quantity>/layer_<l>` and `<group>/<quantity>/<mean|median|max>` (plus the IQR of
    `gsink/ratio`), with a single host sync."""
    names = list(per_layer)
    table = torch.stack(
        [per_layer[n].float().reshape(-1) for n in names]
    )  # torchmetrics' compute() squeezes a 1-layer model's (1,) to ()
    summaries = metrics.summarise(table)
    values = torch.cat([table.flatten(), *summaries.values()]).tolist()
    keys = [f"{n}/layer_{l}" for n in names for l in range(table.shape[1])]
    keys += [f"{n}/{stat}" for stat in summaries for n in names]
    out = dict(zip(keys, values))
    return {k: v for k, v in out.items() if not k.endswith("/iqr") or k == "gsink/ratio/iqr"}
