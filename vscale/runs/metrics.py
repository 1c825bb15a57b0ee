"""A run's metrics.csv as train.py writes it (one row per step, a column per metric), read back."""

import csv
from pathlib import Path

from vscale.errors import MissingInput

Series = dict[str, list[tuple[int, float]]]
"""One run's metrics.csv: {name: [(step, value), ...]}."""


def read_metrics(run_dir: Path) -> Series:
    """A run's metrics.csv as {name: [(step, value), ...]}."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise MissingInput(
            f"{run_dir}: no metrics.csv there; give a run directory written by train.py (runs/<experiment>/<name>)."
        )
    series: Series = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            for name, value in row.items():
                if value and name not in ("step", "epoch"):
                    series.setdefault(name, []).append((int(row["step"]), float(value)))
    return series
