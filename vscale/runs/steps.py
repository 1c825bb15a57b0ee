"""A run's optimizer steps in micro-batches on its devices: the gradient accumulation `data.global_batch` asks for
and the validation interval `run.val_every_n_steps` asks for. train.py sets both on its trainer; the launcher
checks the accumulation of every job before submitting any."""

from vscale.errors import ConfigError


def accumulation(global_batch: int | None, batch_size: int, world_size: int, given: int) -> int:
    """trainer.accumulate_grad_batches for `data.global_batch` rows per optimizer step over
    `world_size` devices; `given` (the trainer's own setting) when no global batch is set."""
    if global_batch is None:
        return given
    per_pass = batch_size * world_size
    if global_batch % per_pass:
        raise ConfigError(
            f"data.global_batch={global_batch} is not divisible by data.batch_size={batch_size} x {world_size} "
            f"device(s) = {per_pass} rows per pass: choose a device count or data.batch_size that divides it."
        )
    derived = global_batch // per_pass
    if given not in (1, derived):
        raise ConfigError(
            f"trainer.accumulate_grad_batches={given} disagrees with data.global_batch={global_batch}, which gives "
            f"{derived} on {world_size} device(s) with data.batch_size={batch_size}: set only data.global_batch."
        )
    return derived


def val_check_interval(val_every_n_steps: int | None, accumulate: int, given) -> int | float | None:
    """trainer.val_check_interval (micro-batches) for validation every `val_every_n_steps` optimizer steps."""
    if val_every_n_steps is None:
        return given
    if given is not None:
        raise ConfigError(
            f"run.val_every_n_steps={val_every_n_steps} and trainer.val_check_interval={given} both set when to "
            "validate: give only run.val_every_n_steps (optimizer steps, independent of the device count)."
        )
    if val_every_n_steps < 1:
        raise ConfigError(f"run.val_every_n_steps={val_every_n_steps} must be at least 1.")
    return val_every_n_steps * accumulate
