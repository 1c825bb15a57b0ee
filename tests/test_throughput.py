"""MFU and FLOPs: the dense peak of each accelerator people train on, matched on the name the driver gives it;
FLOPs counted on the model as trained (an attention arm's own projections included); MFU logged with a peak given."""

import csv

import pytest
import torch
from conftest import tiny_config, tiny_model, train, write_config

from vscale.model import apply_interventions
from vscale.train.callbacks.throughput import flops_per_micro_batch
from vscale.train.peaks import T, device_peak


@pytest.mark.parametrize(
    "name, dtype, peak",
    [
        ("NVIDIA H200", torch.bfloat16, 989 * T),
        ("NVIDIA H200 NVL", torch.bfloat16, 835 * T),
        ("NVIDIA H100 80GB HBM3", torch.bfloat16, 989 * T),
        ("NVIDIA H100 PCIe", torch.float16, 756 * T),
        ("NVIDIA H100 NVL", torch.bfloat16, 835 * T),
        ("NVIDIA A100-SXM4-80GB", torch.bfloat16, 312 * T),
        ("NVIDIA A100 80GB PCIe", torch.float32, 19.5 * T),
        ("NVIDIA B200", torch.bfloat16, 2250 * T),
        ("NVIDIA GH200 480GB", torch.bfloat16, 989 * T),
        ("AMD Instinct MI300X", torch.bfloat16, 1307.4 * T),
    ],
)
def test_the_dense_peak_is_found_for_each_device_name(name, dtype, peak):
    assert device_peak(name, dtype) == peak


def test_tf32_matmuls_use_the_tf32_peak_and_unknown_devices_have_none():
    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")
        assert device_peak("NVIDIA H200", torch.float32) == 494 * T
    finally:
        torch.set_float32_matmul_precision(previous)
    assert device_peak("", torch.bfloat16) is None and device_peak("NVIDIA H200", torch.int8) is None


def test_flops_count_the_attention_arm_as_trained():
    """gated adds a d_model -> heads x head_dim projection per layer: 2 B T d (H hd) FLOPs forward, twice that
    backward."""
    B, T_, (plain, gated) = 2, 16, (apply_interventions(tiny_model(), "off", arm) for arm in ("softmax", "gated"))
    c = plain.config
    extra = (
        c.num_hidden_layers
        * 6
        * B
        * T_
        * c.hidden_size
        * c.num_attention_heads
        * (c.hidden_size // c.num_attention_heads)
    )
    assert flops_per_micro_batch(gated, B, T_) - flops_per_micro_batch(plain, B, T_) == extra


def test_mfu_is_logged_against_the_peak_given(tmp_path):
    config = tiny_config()
    config["trainer"]["callbacks"].append(
        {"class_path": "vscale.train.callbacks.Throughput", "init_args": {"peak_flops": 1.0e12}}
    )
    train(tmp_path, "--trainer.max_steps=10", "--run.val_every_n_steps=1000", config=write_config(tmp_path, config))
    with open(tmp_path / "tiny" / "off-seed0" / "metrics.csv") as f:
        row = [r for r in csv.DictReader(f) if r.get("train/device/mfu")][-1]
    assert float(row["train/device/mfu"]) == pytest.approx(float(row["train/device/flops_per_sec"]) / 1.0e12)


def test_the_model_summary_shows_the_flops_counted_for_throughput(tmp_path):
    from vscale.train.callbacks import RunModelSummary
    from vscale.train.cli import main

    cli = main(
        [
            "fit",
            "--config",
            "configs/tiny.yaml",
            f"--run.root={tmp_path}",
            "--trainer.enable_progress_bar=false",
            "--trainer.max_steps=1",
            "--run.val_every_n_steps=1000",
            "--trainer.num_sanity_val_steps=0",
        ]
    )
    summary = next(c for c in cli.trainer.callbacks if isinstance(c, RunModelSummary))
    assert summary._summary(cli.trainer, cli.model).total_flops == cli.model.flops_per_batch > 0
