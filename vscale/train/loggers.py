"""The loggers of a run: a CSV logger whose metrics.csv survives restarts of the same run, one row per step, and
wandb when `run.wandb` is on, both named by the run's identity.

Lightning's CSVLogger deletes an existing metrics.csv. Here the rows of earlier segments are
kept, and the rows of steps that a resumed run does again (those after its checkpoint) are
replaced, so the file has each step once. Metrics logged separately for one step (the learning
rate, the diagnostics, the loss) share that step's row.
"""

import csv
import json
import sys
import uuid
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from vscale.runs import RunConfig, RunId, read_metrics, wandb_offline
from vscale.runs.late import late_summary


class _ContinuingWriter(ExperimentWriter):
    def log_metrics(self, metrics_dict: dict, step: int | None = None) -> None:
        pending = self.metrics[-1] if self.metrics else None
        super().log_metrics(metrics_dict, step)
        if (
            pending is not None
            and pending["step"] == self.metrics[-1]["step"]
            and not (pending.keys() & metrics_dict.keys())
        ):
            pending.update(self.metrics.pop())

    def _check_log_dir_exists(self) -> None:
        self._resume_from: int | None = None
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = sorted(csv.DictReader(f).fieldnames or [])
            self._resume_from = 0

    def save(self) -> None:
        if self._resume_from is not None and self.metrics:
            self._truncate(min(m["step"] for m in self.metrics))
            self._resume_from = None
        super().save()

    def _truncate(self, first_new_step: int) -> None:
        with self._fs.open(self.metrics_file_path, "r", newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) < first_new_step]
        with self._fs.open(self.metrics_file_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(rows)


class ResumableCSVLogger(CSVLogger):
    """Rows are written whenever the trainer saves its loggers (after each of its logging steps,
    at a checkpoint, at the end), not on a count of its own, so a step's metrics reach the file
    in one row."""

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        self.experiment.log_metrics(metrics, step)

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(log_dir=self.log_dir)
        return self._experiment


TIMING = ("per_sec", "train/time", "mfu", "/batches", "/samples", "/lengths", "epoch")
"""Wall-clock and counter columns, which a late-window median does not summarise."""


def run_loggers(run: RunConfig, run_id: RunId) -> list[Logger]:
    """metrics.csv in the run directory; with `run.wandb`, a wandb run grouped by experiment and tagged with the mode,
    attention arm and seed, resumed under the same id when the run is."""
    loggers: list[Logger] = [ResumableCSVLogger(save_dir=run_id.dir, name="", version="")]
    if run.wandb:
        loggers.append(
            WandbLogger(
                project=run.wandb_project,
                entity=run.wandb_entity,
                group=run_id.experiment,
                name=f"{run_id.experiment}/{run_id.name}",
                tags=[f"vscale={run_id.mode}", f"attention={run_id.attention}", f"seed={run_id.seed}", *run.wandb_tags],
                save_dir=str(run_id.dir),
                offline=wandb_offline(),
                id=wandb_run_id(run_id.dir),
                resume="allow",
            )
        )
        loggers[-1]._wandb_init.pop("anonymous")  # Lightning always passes it; wandb warns that it has no effect
    return loggers


def wandb_run_id(run_dir: Path) -> str:
    """The run's wandb id, kept in the run directory so a restarted or requeued run logs into
    the same wandb run; created by rank 0 on first use."""
    path = run_dir / "wandb_id"
    if path.is_file():
        return path.read_text().strip()
    run_id = uuid.uuid4().hex[:12]
    if rank_zero_only.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(run_id)
    return run_id


def close(loggers) -> None:
    """Write what the loggers hold, put the run's late-window medians (`late/<metric>`, as `eval.py
    compare` summarises a run) into late.json and the wandb run's summary, and finish the wandb run before the process
    exits: Lightning leaves wandb's run to interpreter exit, where it closes asynchronously, and a run
    restarted at once (a requeue, `--ckpt_path last`) would find its id still in use."""
    for logger in loggers:
        logger.save()
    csv_dir = next((Path(logger.log_dir) for logger in loggers if isinstance(logger, ResumableCSVLogger)), None)
    late = {}
    if csv_dir is not None and (csv_dir / "metrics.csv").is_file() and rank_zero_only.rank == 0:
        late = late_summary(read_metrics(csv_dir), skip=TIMING)
        (csv_dir / "late.json").write_text(json.dumps(late, indent=1))
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.run.summary.update(late)
        wandb.finish()
