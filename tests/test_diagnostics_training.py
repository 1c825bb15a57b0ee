"""Diagnostics inside real Lightning training: measured on the training step itself."""

import csv
import os

import lightning as L
import pytest
import torch

from conftest import tiny_config, train
from vscale.callbacks import Diagnostics
from vscale.data import PackedTextData
from vscale.diagnostics import diagnose
from vscale.module import VScaleLM

REQUIRED = [
    "sink/rate", "sink/mass", "sink/alpha", "gsink/ratio", "gsink/q_t0", "gsink/k_t0", "gsink/v_t0",
    "act/h_out_ratio", "act/r_mlp_ratio", "act/h_out_t0", "act/r_mlp_t0",
    *(f"reshape/{b}_{q}_{w}" for b in ("attn", "mlp") for q in ("bloat", "compress", "change") for w in ("t0", "early")),
]


class FirstStep(L.Callback):
    """Keeps the weights and the first micro-batch that optimizer step 0 sees."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self.batch = batch.clone()
            self.state = {k: v.clone() for k, v in pl_module.state_dict().items()}


def fit_tiny(callbacks, max_steps=3, accumulate=1, mode="learned"):
    cfg = tiny_config()
    L.seed_everything(0)
    model = VScaleLM(**{**cfg["model"], "vscale": mode})
    data = PackedTextData(**cfg["data"])
    trainer = L.Trainer(
        max_steps=max_steps, accumulate_grad_batches=accumulate, callbacks=callbacks, gradient_clip_val=1.0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        use_distributed_sampler=False, limit_val_batches=0,
    )
    trainer.fit(model, data)
    return model


def test_training_logs_every_required_name_for_every_layer(tmp_path):
    train(tmp_path, "--trainer.max_steps=11", "--trainer.val_check_interval=11")
    with open(tmp_path / "tiny" / "off-seed0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    names = [f"{n}/layer_{l}" for n in REQUIRED for l in range(4)] + ["gsink/ratio/median", "act/h_out_ratio/max", "gsink/ratio/iqr"]
    for step in ("0", "10"):
        row = next(r for r in rows if r["step"] == step and r.get("gsink/ratio/median"))
        assert all(row[n] != "" for n in names), [n for n in names if row[n] == ""]
    assert not any(r.get("gsink/ratio/median") for r in rows if r["step"] not in ("0", "10"))
    assert (tmp_path / "tiny" / "off-seed0" / "diagnostics" / "profile-step0000010.png").is_file()


@pytest.mark.parametrize("accumulate", [1, 2])
def test_training_step_metrics_equal_diagnose_on_the_same_batch_and_weights(accumulate):
    diagnostics, first = Diagnostics(every_n_steps=100, profile_figure=False), FirstStep()
    model = fit_tiny([first, diagnostics], max_steps=1, accumulate=accumulate)
    model.load_state_dict(first.state)
    expected = diagnose(model.model, first.batch)
    assert diagnostics.last.keys() == expected.keys()
    for name, value in expected.items():
        assert diagnostics.last[name] == pytest.approx(value, rel=1e-4, abs=1e-7), name


def test_training_is_bit_identical_with_diagnostics_on_off_or_absent():
    absent = fit_tiny([], max_steps=4)
    off = fit_tiny([Diagnostics(every_n_steps=0)], max_steps=4)
    every_step = fit_tiny([Diagnostics(every_n_steps=1, profile_figure=False)], max_steps=4)
    for name, value in absent.state_dict().items():
        assert torch.equal(off.state_dict()[name], value), name
        assert torch.equal(every_step.state_dict()[name], value), name


def test_diagnostics_refuse_rows_shorter_than_the_early_window(tmp_path):
    with pytest.raises(ValueError, match=r"data\.seq_len: diagnostics need rows of at least 32 tokens"):
        train(tmp_path, "--data.seq_len=16", "--trainer.max_steps=1")


def test_ddp_diagnostics_are_the_mean_over_ranks(tmp_path):
    """Two gloo processes through train.py; rank r's first micro-batch comes from the resumable order."""
    import subprocess
    import sys
    from itertools import islice

    from vscale.data import ResumableSampler

    cmd = [sys.executable, "train.py", "fit", "--config", "configs/tiny.yaml", f"--run.root={tmp_path}",
           "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp", "--trainer.max_steps=1",
           "--trainer.enable_progress_bar=false", "--trainer.num_sanity_val_steps=0", "--trainer.limit_val_batches=0"]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    with open(tmp_path / "tiny" / "off-seed0" / "metrics.csv") as f:
        logged = next(r for r in csv.DictReader(f) if r["step"] == "0" and r.get("gsink/ratio/layer_0"))

    cfg = tiny_config()
    L.seed_everything(0)
    model = VScaleLM(**cfg["model"])
    data = PackedTextData(**cfg["data"])
    data.setup("fit")
    per_rank = [diagnose(model.model, data.train_data[list(islice(ResumableSampler(len(data.train_data), 0, 0, r, 2), 16))]) for r in (0, 1)]
    for name in ("gsink/ratio/layer_0", "gsink/v_t0/layer_3", "sink/mass/layer_2", "act/h_out_ratio/layer_1", "reshape/mlp_bloat_t0/layer_2"):
        mean = (per_rank[0][name] + per_rank[1][name]) / 2
        assert float(logged[name]) == pytest.approx(mean, rel=1e-4), name
        assert per_rank[0][name] != pytest.approx(per_rank[1][name], rel=1e-4)
