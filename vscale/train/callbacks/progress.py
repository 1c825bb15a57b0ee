"""A progress bar that counts optimizer steps."""

from lightning.pytorch.callbacks import RichProgressBar


class StepProgressBar(RichProgressBar):
    """Lightning's rich bar, labelled by what a step-based run counts: runs are set by
    `trainer.max_steps`, so the epoch is open-ended and Lightning's "Epoch 0/-2" says nothing."""

    def _get_train_description(self, current_epoch: int) -> str:
        return f"train (max_steps {self.trainer.max_steps})"
