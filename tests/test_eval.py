"""eval.py on real checkpoints trained in the test: report, results, figures, comparison."""

import json

import pytest
import torch
from conftest import train

from vscale.eval import cli as eval_cli
from vscale.eval.checkpoints import load_checkpoint
from vscale.eval.measure import measure
from vscale.eval.run import RunOptions

SMALL = dict(batches=2, calib_batches=1, needle_context_lens=[128], needle_seeds=[0, 1], needle_n=2)
PRECISIONS = ["full", "per_token", "per_tensor", "per_tensor_down_proj"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for mode in ("off", "learned"):
        train(
            root,
            f"--model.vscale={mode}",
            "--trainer.max_steps=20",
            "--run.val_every_n_steps=20",
            "--run.ckpt_every=20",
        )
    return {mode: root / "tiny" / f"{mode}-seed0" for mode in ("off", "learned")}


def test_eval_writes_results_report_and_figures_for_two_checkpoints(runs, tmp_path):
    ckpts = [str(runs[m] / "checkpoints" / "last.ckpt") for m in ("off", "learned")]
    eval_cli.run(RunOptions(ckpts, label=["baseline", "vscale"], out=str(tmp_path), **SMALL))
    results = json.loads((tmp_path / "results.json").read_text())
    for label, mode in (("baseline", "off"), ("vscale", "learned")):
        c = results["checkpoints"][label]
        assert c["errors"] == {} and c["vscale"] == mode and c["seed"] == 0 and c["config"]["vscale"] == mode
        assert c["results"]["perplexity"]["ppl"] == pytest.approx(
            torch.tensor(c["results"]["perplexity"]["loss"]).exp().item(), rel=1e-6
        )
        assert set(c["results"]["w8a8"]) == {"w8a8_per_token", "w8a8_per_tensor", "w8a8_per_tensor_down_proj"}
        profile, heads = c["results"]["profile"], c["results"]["heads"]
        assert "gsink/ratio/layer_3" in profile and "gsink/ratio_summed/layer_3" in profile
        for name in ("sink/alpha", "sink/m0", "sink/s0"):  # 4 layers x 4 query heads; the per-layer value is their mean
            assert len(heads[name]) == 4 and all(len(row) == 4 for row in heads[name])
            assert [sum(row) / 4 for row in heads[name]] == pytest.approx(
                [profile[f"{name}/layer_{l}"] for l in range(4)], rel=1e-5
            )
        assert list(c["results"]["needle"]) == PRECISIONS
        for precision in PRECISIONS:
            assert list(c["results"]["needle"][precision]) == ["single", "single_uuid", "multi"]
            assert all(
                len(by_length["128"]["per_seed"]) == 2 and by_length["128"]["beyond_trained_length"] is False
                for by_length in c["results"]["needle"][precision].values()
            )
    report = (tmp_path / "report.md").read_text()
    for heading in (
        "## Perplexity",
        "## Sinks and activations",
        "## W8A8",
        "## Needle retrieval, single ",
        "## Needle retrieval, single_uuid",
        "## Needle retrieval, multi",
        "| full @128 | per_token @128 | per_tensor @128 | per_tensor_down_proj @128 |",
        "M_0 (mean)",
        "R_GS batch-summed (median)",
    ):
        assert heading in report
    assert report.count("**") >= 2
    for figure in (
        "sink_rate.png",
        "token0_ratio.png",
        "gsink_ratio.png",
        "grad_norm_violin.png",
        "alpha_heads.png",
        "needle_accuracy.png",
    ):
        assert (tmp_path / figure).stat().st_size > 10_000 and f"![{figure}]" in report


def test_eval_pools_the_checkpoints_of_one_arm_into_mean_and_std(runs, tmp_path):
    """Labels equal but for -seed<N> form an arm: here the same checkpoint twice, so the mean is its value and the
    std 0, beside an arm of one checkpoint (no std)."""
    off, learned = (str(runs[m] / "checkpoints" / "last.ckpt") for m in ("off", "learned"))
    eval_cli.run(
        RunOptions(
            [off, off, learned],
            label=["off-seed0", "off-seed1", "learned-seed0"],
            out=str(tmp_path),
            batches=1,
            calib_batches=1,
            quant=["per_tensor"],
            needle_context_lens=[],
        )
    )
    results = json.loads((tmp_path / "results.json").read_text())
    ppl = results["checkpoints"]["off-seed0"]["results"]["perplexity"]["ppl"]
    assert results["arms"]["off"]["checkpoints"] == ["off-seed0", "off-seed1"]
    assert results["arms"]["off"]["results"]["perplexity.ppl"] == {"mean": pytest.approx(ppl), "std": 0.0, "n": 2}
    assert results["arms"]["learned"]["results"]["profile.gsink/ratio/median"]["std"] is None
    report = (tmp_path / "report.md").read_text()
    assert "## Arms: mean ± std" in report and f"| off | 2 | {ppl:.4g} ± 0 |" in report


def test_eval_reports_context_beyond_the_trained_length_and_logs_to_wandb(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    results = eval_cli.run(
        RunOptions(
            [str(runs["off"] / "checkpoints" / "last.ckpt")],
            out=str(tmp_path),
            quant=[],
            batches=1,
            needle_context_lens=[200],
            needle_seeds=[0],
            needle_n=1,
            wandb=True,
        )
    )
    offline = list(tmp_path.glob("wandb/offline-run-*"))
    assert len(offline) == 1 and len(list(offline[0].glob("files/media/images/eval/*.png"))) == 6
    assert list(offline[0].glob("files/media/table/eval/summary_*.table.json"))
    assert (
        next(iter(results["checkpoints"].values()))["results"]["needle"]["full"]["single"][200]["beyond_trained_length"]
        is True
    )
    assert "200 (beyond trained)" in (tmp_path / "report.md").read_text()


def test_compare_draws_curves_of_two_runs(runs, tmp_path):
    eval_cli.compare([str(runs["off"]), str(runs["learned"])], out=str(tmp_path))
    summary = (tmp_path / "summary.md").read_text()
    assert "| off | 1 |" in summary and "| learned | 1 |" in summary and "gsink/ratio/median" in summary
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
    with pytest.raises(ValueError, match=r"the eval tokenizer has 4096 tokens but checkpoint .*'s vocab_size is 97"):
        eval_cli.run(
            RunOptions(
                [str(tmp_path / "hf")],
                out=str(tmp_path / "out"),
                tokenizer="assets/tokenizer-tiny",
                val_files=["data/tiny/val.jsonl"],
                seq_len=32,
                batch_size=2,
                needle_context_lens=[],
            )
        )


def test_unknown_quant_mode_is_rejected_before_loading(tmp_path):
    with pytest.raises(ValueError, match="unknown quant='int4'"):
        eval_cli.run(RunOptions([str(tmp_path / "never-loaded.ckpt")], quant=["int4"]))


def test_context_the_model_cannot_address_is_rejected(runs, tmp_path):
    with pytest.raises(
        ValueError, match=r"--needle_context_lens=1000 exceeds checkpoint .*'s max_position_embeddings=256"
    ):
        eval_cli.run(
            RunOptions([str(runs["off"] / "checkpoints" / "last.ckpt")], out=str(tmp_path), needle_context_lens=[1000])
        )


def test_export_then_from_pretrained_gives_the_same_logits(runs, tmp_path):
    import vscale

    ckpt = str(runs["learned"] / "checkpoints" / "last.ckpt")
    eval_cli.export(ckpt, str(tmp_path / "hf"))
    original = load_checkpoint(ckpt).model
    reloaded = vscale.from_pretrained(str(tmp_path / "hf"))
    tokens = torch.randint(0, 4096, (2, 40), generator=torch.Generator().manual_seed(0))
    assert torch.equal(reloaded(tokens).logits, original(tokens).logits)
    assert reloaded.model.layers[0].self_attn.vscale.theta.abs().max() > 0
    assert "vscale_" not in (tmp_path / "hf" / "config.json").read_text()
    assert (tmp_path / "hf" / "tokenizer.json").is_file()


def test_exported_weights_load_in_plain_transformers_without_vscale(runs, tmp_path):
    from transformers import AutoModelForCausalLM

    eval_cli.export(str(runs["learned"] / "checkpoints" / "last.ckpt"), str(tmp_path / "hf"))
    plain = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"))
    assert not any("vscale" in n for n, _ in plain.named_parameters())


def test_an_explicit_eval_source_replaces_the_checkpoint_data_source():
    from vscale.eval.checkpoints import eval_data
    from vscale.eval.options import EvalData

    recorded = {
        "tokenizer": "assets/tokenizer-tiny",
        "train_files": ["data/tiny/train.jsonl"],
        "val_files": ["data/tiny/val.jsonl"],
        "seq_len": 64,
    }
    data = eval_data(EvalData(dataset="allenai/c4", dataset_config="en", seq_len=None), recorded)
    assert data.hparams.train_files is None and data.hparams.dataset == "allenai/c4" and data.hparams.seq_len == 64
    data = eval_data(EvalData(val_files=["data/tiny/val.jsonl"]), recorded)
    assert data.hparams.train_files == data.hparams.val_files == ["data/tiny/val.jsonl"]


def test_a_recorded_seq_len_too_short_for_the_diagnostics_is_refused_naming_where_it_came_from():
    """A given --seq_len is checked by EvalData; one read from the checkpoint's data config is checked where it is
    read."""
    from vscale.eval.checkpoints import eval_data
    from vscale.eval.options import EvalData

    recorded = {"tokenizer": "assets/tokenizer-tiny", "train_files": ["data/tiny/train.jsonl"], "seq_len": 16}
    with pytest.raises(
        ValueError, match=r"--seq_len \(the checkpoint's data.seq_len\): diagnostics need rows of at least 32"
    ):
        eval_data(EvalData(), recorded)
    assert eval_data(EvalData(seq_len=32), recorded).seq_len == 32


def test_the_documented_command_line_works(runs, tmp_path):
    import subprocess
    import sys

    runs_list = f"[{runs['off']}, {runs['learned']}]"
    subprocess.run(
        [
            sys.executable,
            "eval.py",
            "compare",
            "--run",
            runs_list,
            "--label",
            "[baseline, vscale]",
            "--out",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    assert "| baseline |" in (tmp_path / "summary.md").read_text()


def test_a_failing_context_length_is_reported_and_the_others_measured(runs, tmp_path):
    results = eval_cli.run(
        RunOptions(
            [str(runs["off"] / "checkpoints" / "last.ckpt")],
            label=["baseline"],
            out=str(tmp_path),
            quant=[],
            batches=1,
            needle_context_lens=[20, 128],
            needle_seeds=[0],
            needle_n=1,
        )
    )
    c = results["checkpoints"]["baseline"]
    assert "too short" in c["errors"]["full/needle_single@20"] and set(c["results"]["needle"]["full"]["single"]) == {
        128
    }
    assert "baseline / full/needle_single@20" in (tmp_path / "report.md").read_text()


def test_lm_eval_runs_local_and_ruler_style_tasks_on_the_vscale_model_in_full_precision_and_under_w8a8(runs, tmp_path):
    """The RULER path: the eval tokenizer and max_seq_lengths reach the task as metadata, its samples are sized to them,
    RULER's scorer reports by length, and the lengths it did not run (its -1 placeholders) are dropped."""
    results = eval_cli.run(
        RunOptions(
            [str(runs["learned"] / "checkpoints" / "last.ckpt")],
            label=["vscale"],
            out=str(tmp_path),
            quant=["per_tensor"],
            batches=1,
            calib_batches=1,
            needle_context_lens=[],
            lm_eval_tasks=["vscale_local_lastword", "vscale_local_ruler_niah"],
            lm_eval_include_path="tests/data/lmeval",
            lm_eval_limit=4,
            lm_eval_max_seq_lengths=[256],
        )
    )
    c = results["checkpoints"]["vscale"]
    assert c["errors"] == {} and list(c["results"]["lm_eval"]) == ["full", "per_tensor"]
    for scores in c["results"]["lm_eval"].values():
        assert (
            0.0 <= scores["vscale_local_lastword"]["acc,none"] <= 1.0
            and scores["vscale_local_lastword"]["perplexity,none"] > 1.0
        )
        ruler = scores["vscale_local_ruler_niah"]
        assert {m for m in ruler if m[0].isdigit()} == {"256,none", "256_stderr,none"} and 0.0 <= ruler[
            "256,none"
        ] <= 1.0
    assert results["eval"]["lm_eval_max_seq_lengths"] == [256]
    report = (tmp_path / "report.md").read_text()
    assert (
        "## lm-evaluation-harness, full precision" in report and "## lm-evaluation-harness, W8A8 per_tensor" in report
    )
    assert "vscale_local_ruler_niah 256" in report


def test_an_lm_eval_limit_applies_to_each_length(runs, tmp_path):
    """lm-eval keeps a task's first `limit` documents, and RULER's come grouped by length: with one call, a limit below
    the samples per length (4 here) would score the first length only."""
    results = eval_cli.run(
        RunOptions(
            [str(runs["learned"] / "checkpoints" / "last.ckpt")],
            label=["vscale"],
            out=str(tmp_path),
            quant=[],
            batches=1,
            calib_batches=1,
            needle_context_lens=[],
            lm_eval_tasks=["vscale_local_ruler_niah"],
            lm_eval_include_path="tests/data/lmeval",
            lm_eval_limit=2,
            lm_eval_max_seq_lengths=[200, 256],
        )
    )
    ruler = results["checkpoints"]["vscale"]["results"]["lm_eval"]["full"]["vscale_local_ruler_niah"]
    assert {m for m in ruler if m[0].isdigit() and "stderr" not in m} == {"200,none", "256,none"}


def test_unknown_lm_eval_task_is_rejected_before_loading(tmp_path):
    with pytest.raises(ValueError, match="unknown task.*no_such_task"):
        eval_cli.run(
            RunOptions(
                [str(tmp_path / "never-loaded.ckpt")],
                lm_eval_tasks=["no_such_task"],
                lm_eval_include_path="tests/data/lmeval",
            )
        )


def report_of(ppl: dict[str, float], sink_rate: dict[str, float] | None = None) -> str:
    """report.md of checkpoints with the given perplexities (and sink rates), nothing else measured."""
    from vscale.eval.report import render

    data = {
        "tokenizer": "assets/tokenizer-tiny",
        "seq_len": 128,
        "batch_size": 16,
        "train_files": ["data/tiny/train.jsonl"],
        "val_files": ["data/tiny/val.jsonl"],
        "dataset": None,
        "dataset_config": None,
        "chat_template": None,
        "val_fraction": 0.02,
    }
    checkpoints = {
        k: {
            "results": {
                "perplexity": {"loss": float(torch.tensor(p).log()), "ppl": p, "tokens": 8 * 16 * 127},
                "profile": {"sink/rate/mean": (sink_rate or {}).get(k, 0.5)},
            },
            "errors": {},
        }
        for k, p in ppl.items()
    }
    return render(
        {
            "eval": {"data": data, "seed": 0, "batches": 8, "calib_batches": 4, "quant": [], "needle_context_lens": []},
            "checkpoints": checkpoints,
            "figures": [],
        }
    )


def table_rows(report: str, heading: str) -> list[str]:
    section = report.split(heading, 1)[1].split("\n## ", 1)[0]
    return [
        line
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith(("| checkpoint", "| ---"))
    ]


def test_report_bolds_the_single_best_value():
    rows = table_rows(report_of({"baseline": 176.04, "vscale": 134.2}), "## Perplexity")
    assert rows == ["| baseline | 5.171 | 176 |", "| vscale | **4.899** | **134.2** |"]


def test_report_bolds_nothing_when_the_best_value_is_tied_as_printed():
    rows = table_rows(report_of({"baseline": 134.201, "vscale": 134.204, "third": 150.0}), "## Perplexity")
    assert "**" not in "".join(rows) and rows[0].endswith("| 134.2 |") and rows[1].endswith("| 134.2 |")


def test_report_bolds_nothing_in_a_column_without_a_direction():
    report = report_of({"baseline": 176.0, "vscale": 134.2}, sink_rate={"baseline": 0.2, "vscale": 0.9})
    assert "**" not in "".join(table_rows(report, "## Sinks and activations"))
    assert "no better direction, never bold: sink rate (mean)" in report


def test_report_states_which_direction_is_better_under_each_heading():
    report = report_of({"baseline": 176.0, "vscale": 134.2})
    assert report.split("## Perplexity\n\n", 1)[1].startswith("Lower is better in every column")
    assert "Lower is better: R_GS (median)" in report.split("## Sinks and activations", 1)[1]


def test_report_lists_the_eval_data_fields_without_none_values_instead_of_a_dict():
    report = report_of({"baseline": 176.0})
    data = report.split("## Eval data\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert data == [
        "- tokenizer: assets/tokenizer-tiny",
        "- files: data/tiny/val.jsonl",
        "- seq_len: 128",
        "- batch_size: 16",
        "- rows: 128 (8 batches, 16256 predicted tokens)",
        "- seed: 0",
    ]
    assert "{" not in report and "None" not in report
