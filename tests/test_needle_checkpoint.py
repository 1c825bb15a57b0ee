"""A checkpoint that retrieves: the needle measurement measures something. `assets/needle-tiny` is
`configs/needle-tiny.yaml` trained and exported, `assets/needle-tiny-vscale` the same with V-scale
(README, Evaluation); their training documents fill one packed row each, so no needle is ever cut
from its question."""

import json
import re

import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from vscale.data import PackedTextData
from vscale.eval import cli as eval_cli
from vscale.eval.needle import accuracy, make_cases
from vscale.eval.run import RunOptions
from vscale.model import from_pretrained

CHECKPOINT = "assets/needle-tiny"
VSCALE_CHECKPOINT = "assets/needle-tiny-vscale"  # the same config with --model.vscale=learned
TRAINED_LENGTH = 128
TEXTS = [json.loads(line)["text"] for line in open("data/tiny/val.jsonl")]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(CHECKPOINT)


def test_every_document_of_the_needle_file_packs_into_one_row_of_its_own():
    data = PackedTextData(
        tokenizer="assets/tokenizer-tiny",
        train_files=["data/needle/train.parquet"],
        val_files=["data/tiny/val.jsonl"],
        seq_len=TRAINED_LENGTH,
        batch_size=16,
    )
    data.setup("fit")
    documents = pq.read_table("data/needle/train.parquet")["text"].to_pylist()
    assert len(data.train_data) == len(documents)
    encoded = data.tokenizer(documents, add_special_tokens=False)["input_ids"]
    for row, ids, text in zip(data.train_data, encoded, documents):
        assert row.tolist() == ids + [data.tokenizer.eos_token_id]
        if "What is the special magic" in text:
            value = re.search(r"is (\d+)\.$", text).group(1)
            assert text.count(value) == 2, "the needle and the answer, in one row"


def test_the_needle_checkpoint_retrieves_at_its_trained_length_in_full_precision(tokenizer):
    model = from_pretrained(CHECKPOINT).eval()
    cases = [c for seed in (0, 1) for c in make_cases(TEXTS, tokenizer, TRAINED_LENGTH, 10, seed, "single")]
    assert accuracy(model, tokenizer, cases) >= 0.8


def test_eval_reports_the_pairs_needle_accuracies_in_full_precision_and_under_w8a8_in_report_md(tmp_path):
    eval_cli.run(
        RunOptions(
            [CHECKPOINT, VSCALE_CHECKPOINT],
            label=["baseline", "vscale"],
            out=str(tmp_path),
            tokenizer=CHECKPOINT,
            val_files=["data/tiny/val.jsonl"],
            seq_len=TRAINED_LENGTH,
            batches=1,
            calib_batches=1,
            quant=["per_token", "per_tensor"],
            needle_context_lens=[TRAINED_LENGTH],
            needle_seeds=[0],
            needle_n=10,
        )
    )
    checkpoints = json.loads((tmp_path / "results.json").read_text())["checkpoints"]
    for label in ("baseline", "vscale"):
        for precision in ("full", "per_token", "per_tensor"):
            assert checkpoints[label]["results"]["needle"][precision]["single"][str(TRAINED_LENGTH)]["n"] == 10
    section = (tmp_path / "report.md").read_text().split("## Needle retrieval, single ")[1].split("##")[0]
    row = next(line for line in section.splitlines() if line.startswith("| baseline"))
    assert all(float(cell.strip("* ")) >= 0.8 for cell in row.split("|")[2:-1]), row
