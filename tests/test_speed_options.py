"""Speed options change how a step runs, not what it computes: torch.compile (dynamo and
AOTAutograd tracing V-scale's registered attention and the backward-only autograd Function),
activation checkpointing, and the throughput columns every run logs."""

import csv

import pytest
from conftest import metrics, tiny_config, train, write_config

STEPS = ["--trainer.max_steps=4", "--trainer.log_every_n_steps=1", "--run.val_every_n_steps=1000"]


def diagnosed_every_other_step(tmp_path) -> str:
    config = tiny_config()
    config["diagnostics"]["every_n_steps"] = 2
    return write_config(tmp_path, config)


def run(root, config: str, *overrides: str) -> dict[str, dict[int, float]]:
    train(root, *STEPS, *overrides, config=config)
    run_dir = next((root / "tiny").iterdir())
    return {
        name: metrics(run_dir, name)
        for name in ("train/loss", "gsink/ratio/layer_1", "sink/mass/layer_0", "act/v_ratio/layer_2")
    }


@pytest.mark.parametrize("mode", ["learned", "backward"])
def test_compiled_training_matches_eager_training_and_keeps_its_diagnostics(tmp_path, mode):
    config = diagnosed_every_other_step(tmp_path)
    eager = run(tmp_path / "eager", config, f"--model.vscale={mode}")
    compiled = run(
        tmp_path / "compiled",
        config,
        f"--model.vscale={mode}",
        "--model.compile=true",
        "--model.compile_backend=aot_eager",
    )
    assert sorted(compiled["gsink/ratio/layer_1"]) == [1, 3]
    for name, series in eager.items():
        assert compiled[name] == pytest.approx(series, rel=1e-5), name


def test_activation_checkpointing_trains_and_measures_the_same(tmp_path):
    config = diagnosed_every_other_step(tmp_path)
    plain = run(tmp_path / "plain", config, "--model.vscale=learned")
    checkpointed = run(
        tmp_path / "checkpointed", config, "--model.vscale=learned", "--model.activation_checkpointing=true"
    )
    for name, series in plain.items():
        assert checkpointed[name] == pytest.approx(series, rel=1e-6), name


def test_every_run_logs_tokens_per_second_and_flops_on_its_loss_rows(tmp_path):
    train(tmp_path, "--trainer.max_steps=20", "--run.val_every_n_steps=1000")
    with open(tmp_path / "tiny" / "off-seed0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["9", "19"]
    for row in rows:
        assert row["train/loss"] and float(row["train/device/items_per_sec"]) > 0
        tokens_per_step = 16 * 128
        flops_per_token = float(row["train/device/flops_per_sec"]) / float(row["train/device/items_per_sec"])
        assert 6 * 1.3e6 < flops_per_token < 6 * 2.0e6, (
            "forward and backward: about 6 x the matmul parameters per token"
        )
    assert float(rows[-1]["train/lengths"]) == 20 * tokens_per_step
