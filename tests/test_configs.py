"""Every YAML recipe in configs/ parses against train.py's CLI and builds its model."""

from pathlib import Path

import pytest
import torch
import yaml
from conftest import save_tiny_pretrained

from vscale.train.cli import VScaleCLI, main

CONFIGS = sorted(Path("configs").glob("*.yaml"))
PAPER_PARAMS = {"paper-0.1b": 101e6, "paper-0.3b": 291e6, "paper-1b": 1.04e9}


@pytest.fixture(scope="module")
def tiny_prepared(tmp_path_factory) -> str:
    """The shipped corpus prepared with the shipped tokenizer: stands in offline for a config's data.prepared (C4)."""
    from vscale.data.prepare import main as prepare

    out = str(tmp_path_factory.mktemp("prepared") / "tiny")
    prepare(["--config", "configs/tiny.yaml", "--out", out])
    return out


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_parses_against_the_cli(path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["fit", "--config", str(path), "--print_config"])
    assert exit.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["vscale"] == "off"
    assert printed["trainer"]["max_steps"] > 0


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_builds_model_and_data(path, tmp_path, tiny_prepared):
    """Built on the meta device (shapes only; a pretrained one on the CPU); hub tokenizers are swapped for the shipped
    one offline, prepared C4 for the prepared tiny corpus, a GPU-only strategy for the default one, and a pretrained
    model for a tiny saved one."""
    config = yaml.safe_load(path.read_text())
    tokenizer = config["data"].get("tokenizer")  # none for synthetic data
    swap = [] if tokenizer is None or Path(tokenizer).is_dir() else ["--data.tokenizer=assets/tokenizer-tiny"]
    swap += [f"--data.prepared={tiny_prepared}"] if config["data"].get("prepared") else []
    swap += ["--trainer.strategy=auto"]
    if config["model"].get("pretrained"):
        pretrained = save_tiny_pretrained(tmp_path / "pretrained")
        swap += [
            f"--model.pretrained={pretrained}",
            f"--data.tokenizer={pretrained}",
            "--data.chat_template=assets/chat_template.jinja",
            "--data.seq_len=128",
        ]
    with torch.device("cpu" if config["model"].get("pretrained") else "meta"):
        cli = VScaleCLI(args=["--config", str(path), f"--run.root={tmp_path}", *swap], run=False)
    n = sum(p.numel() for p in cli.model.parameters())
    if path.stem in PAPER_PARAMS:
        assert n == pytest.approx(PAPER_PARAMS[path.stem], rel=0.025)
    assert cli.datamodule.hparams.seq_len <= cli.model.model.config.max_position_embeddings
    assert cli.model.model.config._attn_implementation == "vscale_sdpa"


PAPER = [p for p in CONFIGS if p.stem.startswith("paper")]


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_config_reads_prepared_c4_and_streams_it_with_prepared_null(path, tmp_path):
    assert yaml.safe_load(path.read_text())["data"]["prepared"] == "data/c4-gpt2"
    args = [
        "--config",
        str(path),
        f"--run.root={tmp_path}",
        "--data.tokenizer=assets/tokenizer-tiny",
        "--trainer.strategy=auto",
        "--data.prepared=null",
    ]
    with torch.device("meta"):
        cli = VScaleCLI(args=args, run=False)
    assert cli.datamodule.source == "streaming" and cli.datamodule.hparams.dataset == "allenai/c4"


@pytest.mark.parametrize("devices", [1, 8])
@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_config_steps_512_sequences_and_validates_every_1000_steps_on_any_device_count(
    path, devices, tmp_path, tiny_prepared
):
    """The accumulation and the validation interval (in micro-batches) are derived from
    data.global_batch and run.val_every_n_steps for the device count (CPU ranks stand in for GPUs)."""
    args = [
        "--config",
        str(path),
        f"--run.root={tmp_path}",
        "--data.tokenizer=assets/tokenizer-tiny",
        f"--data.prepared={tiny_prepared}",
        "--trainer.accelerator=cpu",
        f"--trainer.devices={devices}",
        "--trainer.strategy=ddp" if devices > 1 else "--trainer.strategy=auto",
    ]
    with torch.device("meta"):
        cli = VScaleCLI(args=args, run=False)
    trainer, batch = cli.trainer, cli.datamodule.hparams.batch_size
    assert batch * trainer.accumulate_grad_batches * trainer.world_size == 512 and trainer.world_size == devices
    assert trainer.val_check_interval == 1000 * trainer.accumulate_grad_batches


def test_paper_1b_shards_each_decoder_layer_with_fsdp_and_writes_whole_checkpoints():
    from jsonargparse import ArgumentParser
    from lightning.pytorch.strategies import FSDPStrategy, Strategy
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    parser = ArgumentParser()
    parser.add_argument("--strategy", type=Strategy)
    config = yaml.safe_load(Path("configs/paper-1b.yaml").read_text())["trainer"]
    strategy = parser.instantiate_classes(parser.parse_object({"strategy": config["strategy"]})).strategy
    assert isinstance(strategy, FSDPStrategy) and strategy._state_dict_type == "full"
    assert strategy.kwargs["auto_wrap_policy"]._module_classes == {LlamaDecoderLayer}
    assert strategy.kwargs["use_orig_params"], "per-parameter weight-decay groups need the original parameters"
