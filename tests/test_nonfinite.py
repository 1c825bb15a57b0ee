"""NonFiniteGuard in real Lightning training: stop with the step and last checkpoint named, or skip."""

import lightning as L
import pytest
import torch
from conftest import tiny_config
from lightning.pytorch.callbacks import ModelCheckpoint

from vscale.data import PackedTextData
from vscale.train.callbacks import NonFiniteGuard
from vscale.train.module import VScaleLM


class PoisonedLM(VScaleLM):
    """The tiny model whose loss is NaN at the given optimizer steps."""

    def __init__(self, poison_steps=(), **kwargs):
        super().__init__(**kwargs)
        self.poison_steps = set(poison_steps)

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.global_step in self.poison_steps else loss


def fit(guard, poison_steps, max_steps=6, checkpoint=None):
    cfg = tiny_config()
    L.seed_everything(0)
    model = PoisonedLM(poison_steps, **cfg["model"])
    callbacks = [guard] + ([checkpoint] if checkpoint else [])
    trainer = L.Trainer(
        max_steps=max_steps,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=checkpoint is not None,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        limit_val_batches=0,
        gradient_clip_val=1.0,
    )
    trainer.fit(model, PackedTextData(**cfg["data"]))
    return model


def test_skip_drops_the_poisoned_update():
    clean = fit(NonFiniteGuard("skip"), poison_steps=(), max_steps=3)
    guard = NonFiniteGuard("skip")
    skipped = fit(guard, poison_steps=(3,), max_steps=4)  # step 3's update is dropped: equal to 3 clean steps
    assert guard.skipped == 1
    for name, value in clean.state_dict().items():
        assert torch.equal(skipped.state_dict()[name], value), name


def test_training_goes_on_after_a_skipped_step():
    guard = NonFiniteGuard("skip")
    model = fit(guard, poison_steps=(1,), max_steps=4)
    assert guard.skipped == 1 and all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_stop_names_the_step_and_the_last_good_checkpoint(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=5, save_last=True)
    with pytest.raises(FloatingPointError, match=r"optimizer step 7 .*last good checkpoint: .*last\.ckpt"):
        fit(NonFiniteGuard("stop"), poison_steps=(7,), max_steps=10, checkpoint=checkpoint)
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["global_step"] == 5


def test_skip_stops_after_max_skips():
    with pytest.raises(
        FloatingPointError, match=r"optimizer step 2 \(1 step\(s\) skipped before\); last good checkpoint: none yet"
    ):
        fit(NonFiniteGuard("skip", max_skips=1), poison_steps=(1, 2))
