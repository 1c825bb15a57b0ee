"""A run's name, written and read in one place: `<mode>-seed<seed>`, `<arm>-<mode>-seed<seed>` for an attention
arm other than softmax. The seed suffix pairs runs of two arms; the name without it is the run's arm."""

import re
from dataclasses import dataclass
from pathlib import Path

SEED_SUFFIX = re.compile(r"-seed(\d+)$")


def run_name(mode: str, seed: int, attention: str = "softmax") -> str:
    """`<mode>-seed<seed>`, prefixed by the attention arm when it is not the model's own softmax."""
    arm = "" if attention == "softmax" else f"{attention}-"
    return f"{arm}{mode}-seed{seed}"


def arm_of(name: str) -> str:
    """A run's arm: its name minus the `-seed<N>` suffix (`off`, `learned`, `gated-off`, ...)."""
    return SEED_SUFFIX.sub("", name)


def seed_of(name: str) -> int | None:
    """The seed in a run name's `-seed<N>` suffix; None without one."""
    match = SEED_SUFFIX.search(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class RunId:
    """Who a run is, fixed by its config before anything is built: the directory it writes to
    (root/experiment/name), the mode, seed and attention arm it trains, and its arm's name."""

    root: str
    experiment: str
    name: str
    mode: str
    seed: int
    attention: str = "softmax"

    @property
    def dir(self) -> Path:
        return Path(self.root) / self.experiment / self.name

    @property
    def arm(self) -> str:
        return arm_of(self.name)
