"""A progress bar that counts optimizer steps."""

from lightning.pytorch.callbacks import RichProgressBar


class StepProgressBar(RichProgressBar):
    """Lightning's rich bar, labelled by what a step-based run counts: runs are set by
    `trainer.max_steps`, so the epoch is open-ended and Lightning's "Epoch 0/-2" says nothing. It counts
    the run's micro-batches, across epochs and restarts, out of all the run's (max_steps x accumulation):
    Lightning's own total is the steps left, so a run continued from step 20 to 29 read "20/9"."""

    def _get_train_description(self, current_epoch: int) -> str:
        return f"train (max_steps {self.trainer.max_steps})"

    @property
    def total_train_batches(self) -> int | float:
        trainer = self.trainer
        if trainer.max_steps is None or trainer.max_steps < 0:
            return super().total_train_batches
        return trainer.max_steps * trainer.accumulate_grad_batches

    @property
    def train_batch_idx(self) -> int:
        return self.trainer.fit_loop.epoch_loop.batch_progress.total.processed
