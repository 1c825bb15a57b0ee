"""eval.py on real checkpoints trained in the test: report, results, figures, comparison."""

import json

import pytest
import torch

from conftest import train
import eval as eval_cli
from vscale.evaluate import load_checkpoint, measure

SMALL = dict(batches=2, calib_batches=1, needle_context_lens=[100, 128], needle_seeds=[0, 1], needle_n=2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for mode in ("off", "learned"):
        train(root, f"--model.vscale={mode}", "--trainer.max_steps=20", "--trainer.val_check_interval=20", "--run.ckpt_every=20")
    return {mode: root / "tiny" / f"{mode}-seed0" for mode in ("off", "learned")}


def test_eval_writes_results_report_and_figures_for_two_checkpoints(runs, tmp_path):
    ckpts = [str(runs[m] / "checkpoints" / "last.ckpt") for m in ("off", "learned")]
    eval_cli.run(ckpts, label=["baseline", "vscale"], out=str(tmp_path), **SMALL)
    results = json.loads((tmp_path / "results.json").read_text())
    for label, mode in (("baseline", "off"), ("vscale", "learned")):
        c = results["checkpoints"][label]
        assert c["errors"] == {} and c["vscale"] == mode and c["seed"] == 0 and c["config"]["vscale"] == mode
        assert c["results"]["perplexity"]["ppl"] == pytest.approx(torch.tensor(c["results"]["perplexity"]["loss"]).exp().item(), rel=1e-6)
        assert set(c["results"]["w8a8"]) == {"w8a8_per_token", "w8a8_per_tensor", "w8a8_per_tensor_down_proj"}
        assert "gsink/ratio/layer_3" in c["results"]["profile"]
        assert set(c["results"]["needle_single"]) == {"100", "128"} and c["results"]["needle_multi"]["128"]["beyond_trained_length"] is False
    report = (tmp_path / "report.md").read_text()
    for heading in ("## Perplexity", "## Sinks and activations", "## W8A8", "## Needle retrieval, single", "## Needle retrieval, multi"):
        assert heading in report
    assert report.count("**") >= 2
    for figure in ("sink_rate.png", "token0_ratio.png", "gsink_ratio.png", "grad_norm_violin.png"):
        assert (tmp_path / figure).stat().st_size > 10_000


def test_eval_reports_context_beyond_the_trained_length(runs, tmp_path):
    results = eval_cli.run([str(runs["off"] / "checkpoints" / "last.ckpt")], out=str(tmp_path), quant=[], batches=1,
                           needle_context_lens=[200], needle_seeds=[0], needle_n=1)
    assert next(iter(results["checkpoints"].values()))["results"]["needle_single"][200]["beyond_trained_length"] is True
    assert "200 (beyond trained)" in (tmp_path / "report.md").read_text()


def test_compare_draws_curves_of_two_runs(runs, tmp_path):
    eval_cli.compare([str(runs["off"]), str(runs["learned"])], out=str(tmp_path))
    summary = (tmp_path / "summary.md").read_text()
    assert "| off-seed0 |" in summary and "| learned-seed0 |" in summary and "gsink/ratio/median" in summary
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_a_failing_measurement_is_recorded_and_the_others_kept():
    results, errors = {"perplexity": 1.0}, {}
    measure("needle_single", results, errors, lambda: 1 / 0)
    assert results == {"perplexity": 1.0} and errors["needle_single"].startswith("ZeroDivisionError")


def test_missing_checkpoint_is_rejected(tmp_path):
    with pytest.raises(Exception, match="missing"):
        load_checkpoint(str(tmp_path / "missing.ckpt"))


def test_corrupt_checkpoint_is_rejected(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        load_checkpoint(str(bad))


def test_checkpoint_with_a_smaller_vocabulary_than_the_tokenizer_is_rejected(tmp_path):
    from conftest import tiny_model

    tiny_model().save_pretrained(tmp_path / "hf")
    with pytest.raises(ValueError, match="vocab_size 97 is smaller than the eval tokenizer's 4096"):
        eval_cli.run([str(tmp_path / "hf")], out=str(tmp_path / "out"), tokenizer="assets/tokenizer-tiny",
                     val_files=["data/tiny/val.jsonl"], seq_len=32, batch_size=2, needle_context_lens=[])


def test_unknown_quant_mode_is_rejected_before_loading(tmp_path):
    with pytest.raises(ValueError, match="unknown quant='int4'"):
        eval_cli.run([str(tmp_path / "never-loaded.ckpt")], quant=["int4"])


def test_context_the_model_cannot_address_is_rejected(runs, tmp_path):
    with pytest.raises(ValueError, match="addresses at most 256 positions; context length 1000"):
        eval_cli.run([str(runs["off"] / "checkpoints" / "last.ckpt")], out=str(tmp_path), needle_context_lens=[1000])
