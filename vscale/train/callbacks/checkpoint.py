"""Periodic checkpoints, and the final one, always at a step boundary."""

from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that writes `last.ckpt` at the final optimizer step too, always at a step
    boundary. Lightning writes it at train end only when no last checkpoint was written during
    this fit, and a checkpoint written there resumes one logging step off (its epoch counts as
    finished), which breaks extending a finished run's max_steps. A step's checkpoint has one
    name: a step done again after a resume replaces its file, never adds a `-v1` beside it."""

    def __init__(self, every_n_train_steps: int, **kwargs):
        super().__init__(
            every_n_train_steps=every_n_train_steps, save_last=True, enable_version_counter=False, **kwargs
        )
        self.every_n_train_steps = every_n_train_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        step = trainer.global_step
        if step == trainer.max_steps and step % self.every_n_train_steps:
            trainer.save_checkpoint(
                Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}", weights_only=False
            )

    def on_train_end(self, trainer, pl_module) -> None:
        """Nothing: every checkpoint is written at a step boundary."""
