"""A clean stop on SIGUSR1/SIGTERM: finish the step, checkpoint, requeue on Slurm, exit."""

import signal
import threading
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from vscale.train import slurm
from vscale.train.loggers import close


class Preemption(L.Callback):
    """Turns SIGUSR1 (Slurm's warning before the time limit, `#SBATCH --signal=USR1@90`) and
    SIGTERM (time limit, preemption, `scancel`, `scontrol requeue`, a local kill) into a clean
    stop: the optimizer step under way finishes, `last.ckpt` is written, a Slurm job is
    requeued, and the process exits, so the same command with `--ckpt_path=last` continues
    exactly.

    It replaces Lightning's handlers, which save inside the signal handler (in the middle of a
    step) and leave SIGTERM at the time limit unhandled (Lightning issue #20542). On Slurm,
    SIGUSR1 requeues; SIGTERM requeues only when the job hit its time limit, so `scancel`
    still cancels and a Slurm-initiated requeue is not doubled. Ranks agree on when to stop with
    one all-reduce per optimizer step when there is more than one; none on a single device.

    Args:
        requeue: Requeue the Slurm job (when running under Slurm).
    """

    SIGNALS = (signal.SIGUSR1, signal.SIGTERM)

    def __init__(self, requeue: bool = True):
        self.requeue = requeue
        self.received: int | None = None
        self._previous: dict = {}
        self._step_at_start = 0
        self._saved: str | None = None

    def _on_signal(self, signum: int, frame) -> None:
        self.received = self.received or signum

    def on_train_start(self, trainer, pl_module) -> None:
        """Installed here, after Lightning registered its own handlers, so these replace them."""
        self.received, self._saved = None, None
        if threading.current_thread() is not threading.main_thread():
            rank_zero_warn(
                "Preemption: training runs outside the main thread, "
                "where signals cannot be handled; a SIGTERM will not checkpoint."
            )
            return
        self._previous = {s: signal.signal(s, self._on_signal) for s in self.SIGNALS}

    def teardown(self, trainer, pl_module, stage: str) -> None:
        for s, previous in self._previous.items():
            if signal.getsignal(s) == self._on_signal:
                signal.signal(s, previous)
        self._previous = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self._saved is not None:
            self._exit(trainer)
        self._step_at_start = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step == self._step_at_start:  # inside a gradient accumulation
            return
        if not trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):
            return
        ckpt_dir = (
            Path(trainer.checkpoint_callback.dirpath) if trainer.checkpoint_callback else Path(trainer.default_root_dir)
        )
        self._saved = str(ckpt_dir / "last.ckpt")
        trainer.save_checkpoint(self._saved, weights_only=False)

    def _exit(self, trainer) -> None:
        """Called at the next batch start, once the stopped step's metrics have been logged. Exits 0
        when the job was requeued, else with the status of death by the signal (128 + signum)."""
        close(trainer.loggers)
        name = signal.Signals(self.received or signal.SIGTERM).name
        done = f"{name}: stopped after optimizer step {trainer.global_step}, checkpoint {self._saved}"
        job = slurm.job_id()
        if self.requeue and job and trainer.is_global_zero and self._wants_requeue(job):
            slurm.requeue(job)
            rank_zero_info(f"{done}; Slurm job {job} requeued.")
            raise SystemExit(0)
        rank_zero_info(f"{done}; resume with the same command and --ckpt_path=last.")
        raise SystemExit(128 + (self.received or signal.SIGTERM))

    def _wants_requeue(self, job: str) -> bool:
        if self.received != signal.SIGTERM:
            return True
        try:
            return slurm.hit_time_limit(job)
        except Exception as error:  # scontrol missing or failing: keep the checkpoint, skip the requeue
            rank_zero_warn(f"could not ask Slurm why job {job} got SIGTERM ({error}); not requeueing.")
            return False
