"""Tokens per second, FLOP/s and MFU of training, and peak accelerator memory.

Lightning's ThroughputMonitor does the measuring (a sliding window of steps, rates per device and over all devices, MFU
where the device's peak FLOP/s is known: `vscale.train.peaks`, Lightning's table, or `peak_flops`), fed with the FLOPs
of one micro-batch's forward and backward counted by Lightning's `measure_flops` on a meta-device copy of the model as
trained (V-scale and attention arm installed) (nothing is allocated or run). Here it is logged on the optimizer step it
measured, the row `train/loss` is logged on, rather than on a micro-batch count.
"""

import functools
import json

import torch
from lightning.fabric.utilities.throughput import measure_flops
from lightning.pytorch.callbacks import ThroughputMonitor
from lightning.pytorch.callbacks.throughput_monitor import (
    _plugin_to_compute_dtype,
)  # Lightning's precision -> compute dtype
from lightning.pytorch.utilities import rank_zero_only
from transformers import AutoModelForCausalLM

from vscale.data import split_batch
from vscale.model import attention_arm, kernel_name, vscale_modules
from vscale.model.install import install
from vscale.train.peaks import device_peak


def _rows(batch) -> int:
    return split_batch(batch)[0].shape[0]


def _tokens(batch) -> int:
    return split_batch(batch)[0].numel()


def flops_per_micro_batch(model, batch_size: int, seq_len: int) -> int:
    """FLOPs of the LM loss's forward and backward on one (batch_size, seq_len) micro-batch of `model` as
    trained (its architecture, V-scale mode and attention arm, whose own projections count), counted on
    the meta device, once per architecture and shape in a process (runs in one process share it)."""
    scalers = vscale_modules(model)
    mode = scalers[0].mode if scalers else "off"
    config = type(model.config), model.config.to_json_string()
    return _meta_flops(*config, kernel_name(model), mode, attention_arm(model), batch_size, seq_len)


@functools.cache
def _meta_flops(config_class, config: str, kernel: str, mode: str, arm: str, batch_size: int, seq_len: int) -> int:
    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(config_class.from_dict(json.loads(config)), attn_implementation=kernel)
        install(meta, mode, arm)
        ids = torch.zeros(batch_size, seq_len, dtype=torch.long)
    return measure_flops(meta, lambda: meta(input_ids=ids, labels=ids).loss, loss_fn=lambda loss: loss)


class Throughput(ThroughputMonitor):
    """`train/device/items_per_sec` (tokens/s per device), `train/items_per_sec` (over all
    devices, with several), `train/device/samples_per_sec`, `train/device/flops_per_sec`,
    `train/device/mfu` (where the peak is known), `train/lengths` (tokens seen on this device) and
    `train/peak_memory_gib` (CUDA), every `log_every_n_steps`, as rates over the steps since the
    previous log.

    Args:
        peak_flops: Peak FLOP/s of one device for MFU, overriding the table of `vscale.train.peaks` (dense datasheet
            peaks of A100, H100, H200, B200, GH200, MI300X) and Lightning's; None looks the device up there.
    """

    def __init__(self, peak_flops: float | None = None):
        super().__init__(batch_size_fn=_rows, length_fn=_tokens)
        self.peak_flops = peak_flops

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.kwargs["window_size"] = max(2, trainer.log_every_n_steps * trainer.accumulate_grad_batches)
        super().setup(trainer, pl_module, stage)
        device = trainer.strategy.root_device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
        peak = self.peak_flops or device_peak(name, _plugin_to_compute_dtype(trainer.precision_plugin))
        if peak:
            self.available_flops = peak
            for throughput in self._throughputs.values():
                throughput.available_flops = peak
        data = trainer.datamodule.hparams if trainer.datamodule is not None else None
        if stage == "fit" and data is not None:
            pl_module.flops_per_batch = flops_per_micro_batch(pl_module.model, data.batch_size, data.seq_len)

    @rank_zero_only
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        """After the step's last micro-batch, on the steps Lightning logs: the window's rates, given
        to the loggers directly (not saved yet), so they join the step's row of train/loss."""
        self._update(trainer, pl_module, batch, trainer.fit_loop.total_batch_idx + 1)
        if (batch_idx + 1) % trainer.accumulate_grad_batches or not trainer._logger_connector.should_update_logs:
            return
        stage = trainer.state.stage
        throughput = self._throughputs[stage]
        metrics = {f"{stage.value}{throughput.separator}{k}": v for k, v in throughput.compute().items()}
        if trainer.strategy.root_device.type == "cuda":
            metrics["train/peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step - 1)  # the optimizer step just taken
