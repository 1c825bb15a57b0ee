"""Bad input fails with an error naming the field and the fix, before any compute is spent."""

import argparse
import re
import subprocess
import sys

import pytest
from conftest import QUIET, save_tiny_pretrained, tiny_config, write_config

from vscale.errors import ConfigError
from vscale.eval.cli import main as eval_main
from vscale.train.cli import main

BROKEN_YAML = "model:\n  vscale: [off, learned\ndata:\n  seq_len: 8\n"
"""A flow sequence left open: PyYAML notices at `data:`, line 3, column 5."""


def fit(tmp_path, *overrides, config: dict | None = None):
    path = "configs/tiny.yaml" if config is None else write_config(tmp_path, config)
    return main(["fit", "--config", path, f"--run.root={tmp_path / 'runs'}", *QUIET, *overrides])


def assert_nothing_ran(tmp_path):
    assert not list((tmp_path / "runs").rglob("*.csv")) and not list((tmp_path / "runs").rglob("*.ckpt"))


def test_unknown_mode_is_rejected_by_the_parser(tmp_path):
    with pytest.raises(argparse.ArgumentError, match=r"(?s)model\.vscale.*learned"):
        fit(tmp_path, "--model.vscale=on")
    assert_nothing_ran(tmp_path)


@pytest.mark.parametrize("lam", ["0", "-2.5"])
def test_non_positive_lambda_is_rejected(tmp_path, lam):
    with pytest.raises(ValueError, match=r"model\.vscale_lambda.*must be a finite number > 0"):
        fit(tmp_path, "--model.vscale=fixed", f"--model.vscale_lambda={lam}")
    assert_nothing_ran(tmp_path)


def test_context_longer_than_max_positions_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"data\.seq_len=512 exceeds the model's max_position_embeddings=256"):
        fit(tmp_path, "--data.seq_len=512")
    assert_nothing_ran(tmp_path)


def test_missing_dataset_path_is_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data\.train_files: no such file.*missing\.jsonl"):
        fit(tmp_path, "--data.train_files=[data/tiny/missing.jsonl]")
    assert_nothing_ran(tmp_path)


def test_tokenizer_larger_than_model_vocabulary_is_rejected(tmp_path):
    config = tiny_config()
    config["model"]["model_config"]["vocab_size"] = 1000
    with pytest.raises(
        ValueError, match=r"data\.tokenizer has 4096 tokens but the model's vocab_size is 1000.*vocab_size >= 4096"
    ):
        fit(tmp_path, config=config)
    assert_nothing_ran(tmp_path)


def test_non_pre_norm_model_type_is_rejected(tmp_path):
    config = tiny_config()
    config["model"]["model_config"]["model_type"] = "gpt2"
    with pytest.raises(ValueError, match=r"model\.model_config\.model_type='gpt2'.*pre-norm RMSNorm"):
        fit(tmp_path, config=config)
    assert_nothing_ran(tmp_path)


def test_non_pre_norm_pretrained_model_is_rejected(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=4096)).save_pretrained(tmp_path / "gpt2")
    config = tiny_config()
    config["model"]["model_config"] = None
    config["model"]["pretrained"] = str(tmp_path / "gpt2")
    with pytest.raises(ValueError, match=r"pre-norm RMSNorm decoder.*model_type='gpt2'"):
        fit(tmp_path, config=config)
    assert_nothing_ran(tmp_path)


def test_model_given_twice_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"exactly one of model\.model_config.*model\.pretrained"):
        fit(tmp_path, "--model.pretrained=some/model")


def test_global_batch_that_the_devices_cannot_divide_is_rejected(tmp_path):
    with pytest.raises(
        ValueError, match=r"data\.global_batch=48 is not divisible by data\.batch_size=16 x 2 device\(s\) = 32"
    ):
        fit(
            tmp_path,
            "--data.global_batch=48",
            "--trainer.accelerator=cpu",
            "--trainer.devices=2",
            "--trainer.strategy=ddp",
        )
    assert_nothing_ran(tmp_path)


def test_global_batch_beside_a_different_accumulation_is_rejected(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"trainer\.accumulate_grad_batches=4 disagrees with data\.global_batch=32.*set only data\.global_batch",
    ):
        fit(tmp_path, "--data.global_batch=32", "--trainer.accumulate_grad_batches=4")
    assert_nothing_ran(tmp_path)


def test_validation_interval_given_both_ways_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"run\.val_every_n_steps=100 and trainer\.val_check_interval=50 both set"):
        fit(tmp_path, "--trainer.val_check_interval=50")
    assert_nothing_ran(tmp_path)


def test_diagnostics_interval_off_the_logging_steps_is_rejected(tmp_path):
    with pytest.raises(
        ValueError, match=r"diagnostics\.every_n_steps=10 is not a multiple of trainer\.log_every_n_steps=4"
    ):
        fit(tmp_path, "--trainer.log_every_n_steps=4")
    assert_nothing_ran(tmp_path)


def test_embedding_std_with_a_pretrained_model_is_rejected(tmp_path):
    config = tiny_config()
    config["model"]["model_config"] = None
    config["model"]["pretrained"] = str(save_tiny_pretrained(tmp_path / "pretrained"))
    with pytest.raises(
        ValueError,
        match=r"model\.embedding_std=1\.0 re-initialises a fresh model's embeddings.*remove model\.embedding_std",
    ):
        fit(tmp_path, "--model.embedding_std=1.0", config=config)
    assert_nothing_ran(tmp_path)


def test_non_positive_embedding_std_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"model\.embedding_std=0\.0 must be > 0"):
        fit(tmp_path, "--model.embedding_std=0")
    assert_nothing_ran(tmp_path)


def broken_config(tmp_path) -> str:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN_YAML)
    return str(path)


def names_file_and_line(path: str) -> str:
    return re.escape(
        f"{path}, line 3, column 5: expected ',' or ']', but got ':' (while parsing a flow sequence at line 2, "
        "column 11). Fix the YAML there"
    )


def test_a_training_config_that_does_not_parse_is_refused_naming_its_file_and_line(tmp_path):
    path = broken_config(tmp_path)
    with pytest.raises(ConfigError, match=names_file_and_line(path)):
        main(["fit", "--config", path, f"--run.root={tmp_path / 'runs'}", *QUIET])
    assert_nothing_ran(tmp_path)


def test_an_eval_config_that_does_not_parse_is_refused_naming_its_file_and_line(tmp_path):
    path = broken_config(tmp_path)
    with pytest.raises(SystemExit, match=f"^error: {names_file_and_line(path)}"):
        eval_main(["run", f"--config={path}"])


@pytest.mark.parametrize(
    "module, flags",
    [("vscale.launch", ["--gpus-per-node", "0", "--dry-run"]), ("vscale.prepare", ["--out", "unused"])],
    ids=["launcher", "prepare"],
)
def test_a_config_of_another_entry_point_that_does_not_parse_is_refused_in_one_line_naming_its_file_and_line(
    tmp_path, module, flags
):
    path = broken_config(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", module, "--config", path, *flags],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert re.match(f"error: {names_file_and_line(path)}", done.stderr.strip().splitlines()[-1]), done.stderr
