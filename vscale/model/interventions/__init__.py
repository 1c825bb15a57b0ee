"""Training-time interventions on the attention of a pre-norm decoder, one module each.

- `value_scale`: V-scale on the value path (`model.vscale`; docs/method.md §2).
- attention arms (`model.attention`), which change how attention weights are formed or used, each
  implementing `arm.Arm`: `softmax` (the model's own), `gated` (Qiu et al. 2025), `sink_logit` (a
  learnable logit per head in the normaliser, as in gpt-oss), `softpick` (Zuhri et al. 2025),
  `kv_bias` (Sun et al. 2024, explicit attention bias) and `diff` (Ye et al. 2024, differential attention).
"""

from vscale.errors import ConfigError
from vscale.model.interventions.arm import Arm
from vscale.model.interventions.diff import Diff
from vscale.model.interventions.gated import Gated
from vscale.model.interventions.kv_bias import KVBias
from vscale.model.interventions.sink_logit import SinkLogit
from vscale.model.interventions.softmax import Softmax
from vscale.model.interventions.softpick import Softpick

ARMS: dict[str, type[Arm]] = {cls.name: cls for cls in (Softmax, Gated, SinkLogit, Softpick, KVBias, Diff)}
SOFTMAX = Softmax()  # the arm of a model without one installed


def check_attention(name: str) -> None:
    if name not in ARMS:
        raise ConfigError(
            f"unknown attention arm {name!r} (model.attention, "
            f"or apply_interventions(attention=...)); choose one of {', '.join(ARMS)}."
        )
