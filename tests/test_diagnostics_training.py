"""Diagnostics inside real Lightning training: measured on the training step itself."""

import csv
import os

import lightning as L
import pytest
import torch
from conftest import metrics, tiny_config, train, write_config

from vscale.data import PackedTextData
from vscale.diagnostics import diagnose, diagnose_batches
from vscale.train.callbacks import Diagnostics
from vscale.train.module import VScaleLM

REQUIRED = [
    "sink/rate",
    "sink/mass",
    "sink/alpha",
    "gsink/ratio",
    "gsink/q_t0",
    "gsink/k_t0",
    "gsink/v_t0",
    "act/h_out_ratio",
    "act/r_mlp_ratio",
    "act/h_out_t0",
    "act/r_mlp_t0",
    *(
        f"reshape/{b}_{q}_{w}"
        for b in ("attn", "mlp")
        for q in ("bloat", "compress", "change")
        for w in ("t0", "early")
    ),
]


class FirstStep(L.Callback):
    """Keeps the weights and the micro-batches that optimizer step 0 sees."""

    def __init__(self):
        self.batches = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self.state = {k: v.clone() for k, v in pl_module.state_dict().items()}
        if trainer.global_step == 0:
            self.batches.append(batch.clone())


def fit_tiny(callbacks, max_steps=3, accumulate=1, mode="learned"):
    cfg = tiny_config()
    L.seed_everything(0)
    model = VScaleLM(**{**cfg["model"], "vscale": mode})
    data = PackedTextData(**cfg["data"])
    trainer = L.Trainer(
        max_steps=max_steps,
        accumulate_grad_batches=accumulate,
        callbacks=callbacks,
        gradient_clip_val=1.0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        limit_val_batches=0,
    )
    trainer.fit(model, data)
    return model


def test_training_logs_every_required_name_for_every_layer(tmp_path):
    train(tmp_path, "--trainer.max_steps=20", "--run.val_every_n_steps=20")
    with open(tmp_path / "tiny" / "off-seed0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    names = [f"{n}/layer_{l}" for n in REQUIRED for l in range(4)] + [
        "gsink/ratio/median",
        "act/h_out_ratio/max",
        "gsink/ratio/iqr",
    ]
    for step in ("9", "19"):
        row = next(r for r in rows if r["step"] == step and r.get("gsink/ratio/median"))
        assert all(row[n] != "" for n in names), [n for n in names if row[n] == ""]
    assert not any(r.get("gsink/ratio/median") for r in rows if r["step"] not in ("9", "19"))
    assert (tmp_path / "tiny" / "off-seed0" / "diagnostics" / "profile-step0000019.png").is_file()


@pytest.mark.parametrize("accumulate", [1, 2])
def test_training_step_metrics_equal_diagnose_pooled_over_the_steps_micro_batches(accumulate):
    diagnostics, first = Diagnostics(every_n_steps=1, profile_figure=False), FirstStep()
    model = fit_tiny([first, diagnostics], max_steps=1, accumulate=accumulate)
    model.load_state_dict(first.state)
    assert len(first.batches) == accumulate
    expected = diagnose_batches(model.model, first.batches)[0]
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


def test_ddp_diagnostics_pool_the_rows_of_both_ranks(tmp_path):
    """Two gloo processes through train.py; rank r's first micro-batch comes from the resumable order."""
    import subprocess
    import sys
    from itertools import islice

    from vscale.data import ResumableSampler

    every_step = tiny_config()
    every_step["diagnostics"]["every_n_steps"] = 1
    cmd = [
        sys.executable,
        "train.py",
        "fit",
        "--config",
        write_config(tmp_path, every_step),
        f"--run.root={tmp_path}",
        "--trainer.log_every_n_steps=1",
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
        "--trainer.max_steps=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.limit_val_batches=0",
    ]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    with open(tmp_path / "tiny" / "off-seed0" / "metrics.csv") as f:
        logged = next(r for r in csv.DictReader(f) if r["step"] == "0" and r.get("gsink/ratio/layer_0"))

    cfg = tiny_config()
    L.seed_everything(0)
    model = VScaleLM(**cfg["model"])
    data = PackedTextData(**cfg["data"])
    data.setup("fit")
    rank_batches = [
        data.train_data[list(islice(ResumableSampler(len(data.train_data), 0, 0, r, 2), 16))] for r in (0, 1)
    ]
    pooled = diagnose_batches(model.model, rank_batches)[0]
    per_rank = [diagnose(model.model, batch) for batch in rank_batches]
    for name in (
        "gsink/ratio/layer_0",
        "gsink/ratio_summed/layer_2",
        "gsink/v_t0/layer_3",
        "sink/mass/layer_2",
        "act/h_out_ratio/layer_1",
        "reshape/mlp_bloat_t0/layer_2",
        "gsink/ratio/median",
    ):
        assert float(logged[name]) == pytest.approx(pooled[name], rel=1e-4), name
        assert per_rank[0][name] != pytest.approx(per_rank[1][name], rel=1e-4)


def test_each_diagnostic_step_shares_one_metrics_row_with_its_loss(tmp_path):
    train(tmp_path, "--trainer.max_steps=20", "--run.val_every_n_steps=1000")
    with open(tmp_path / "tiny" / "off-seed0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [
        (r["step"], bool(r["train/loss"]), bool(r["gsink/ratio/median"]), bool(r["lr-AdamW/pg1"])) for r in rows
    ] == [("9", True, True, True), ("19", True, True, True)]


class LiveObjects(L.Callback):
    """Counts, after each optimizer step, the tensors Python can reach and the hooks left on modules."""

    def __init__(self):
        self.tensors, self.hooks = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        import gc

        gc.collect()
        self.tensors.append(sum(1 for o in gc.get_objects() if torch.is_tensor(o)))
        self.hooks.append(sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in pl_module.modules()))


def test_diagnostic_steps_keep_no_tensors_or_hooks_alive():
    """A diagnostic step once kept its whole autograd graph (about 55 MB on this model) through a
    reference cycle between saved measurements and tensor hooks; every step here is measured."""
    live = LiveObjects()
    fit_tiny([Diagnostics(every_n_steps=1, profile_figure=False), live], max_steps=12)
    assert live.hooks == [0] * 12
    assert max(live.tensors[2:]) == min(live.tensors[2:]), live.tensors


def test_one_flag_turns_the_diagnostics_off_or_changes_their_interval(tmp_path):
    train(tmp_path / "off", "--trainer.max_steps=10", "--run.val_every_n_steps=1000", "--diagnostics.every_n_steps=0")
    with open(tmp_path / "off" / "tiny" / "off-seed0" / "metrics.csv") as f:
        header = f.readline()
    assert "train/loss" in header and "gsink/ratio" not in header and "sink/alpha" not in header
    train(
        tmp_path / "five",
        "--trainer.max_steps=10",
        "--run.val_every_n_steps=1000",
        "--diagnostics.every_n_steps=5",
        "--trainer.log_every_n_steps=5",
    )
    assert sorted(metrics(tmp_path / "five" / "tiny" / "off-seed0", "gsink/ratio/median")) == [4, 9]


def test_diagnostics_listed_among_the_trainer_callbacks_are_refused(tmp_path):
    config = tiny_config()
    config["trainer"]["callbacks"].append({"class_path": "vscale.train.callbacks.Diagnostics"})
    with pytest.raises(
        ValueError,
        match=r"trainer\.callbacks lists vscale\.train\.callbacks\.Diagnostics: configure it under diagnostics:",
    ):
        train(tmp_path, config=write_config(tmp_path, config))
