"""What makes a checkpoint safe to resume from: it is written atomically, and it carries the
random-number state, so a resumed run draws the same dropout masks as an uninterrupted one."""

import os
import random
from pathlib import Path

import numpy as np
import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to `.<name>.partial` beside it, fsyncs, and renames it into place, so a
    kill during a save leaves the previous checkpoint intact.

    Lightning's own save stages the file in $TMPDIR and moves it, which is a rename only when
    $TMPDIR shares the checkpoint's filesystem (rarely so on a cluster); otherwise it is a copy
    that a kill can cut short. Remote paths keep Lightning's behaviour.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if not _is_local_file_protocol(str(path)):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        with open(partial, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)


def rng_state() -> dict:
    """Every generator a training step may draw from (dropout, data augmentation), as tensors
    and plain numbers so that the checkpoint loads with `weights_only=True`."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
