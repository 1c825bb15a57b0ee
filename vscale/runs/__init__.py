"""A training run as every later stage sees it, below training, evaluation and the launcher: its `run:` section and
identity (name format and parse, directory, arm; `config`, `identity`), its optimizer steps in micro-batches
(`steps`), its metrics.csv read back (`metrics`) and its late-window summary (`late`)."""

from vscale.runs.config import RunConfig, wandb_offline
from vscale.runs.identity import RunId, arm_of, run_name, seed_of
from vscale.runs.metrics import Series, read_metrics

__all__ = ["RunConfig", "RunId", "Series", "arm_of", "read_metrics", "run_name", "seed_of", "wandb_offline"]
