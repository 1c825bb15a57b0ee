"""Packed rows (docs/method.md §1) and a data order that is a function of (seed, position)."""

import json
import shutil
from itertools import islice
from types import SimpleNamespace

import datasets
import pytest
import torch

from vscale.data import DataSource, PackedTextData, ResumableSampler, StreamingRows, load_tokenizer

TINY = {"train_files": ["data/tiny/train.jsonl"], "val_files": ["data/tiny/val.jsonl"]}
DOCS = [
    "The first document is short.",
    "A second one, a little longer than the first.",
    "Third.",
    "And a fourth to close.",
]


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    return str(path)


def expected_stream(tokenizer):
    """Independent packing: each document's tokens, then <eos>, concatenated."""
    out = []
    for doc in DOCS:
        out += tokenizer.encode(doc, add_special_tokens=False) + [tokenizer.eos_token_id]
    return out


def test_rows_are_documents_separated_by_eos_without_bos(jsonl):
    data = PackedTextData("assets/tokenizer-tiny", seq_len=8, batch_size=2, train_files=[jsonl], val_files=[jsonl])
    data.setup("fit")
    stream = expected_stream(data.tokenizer)
    rows = data.train_data
    assert rows.shape == (len(stream) // 8, 8)
    assert rows.flatten().tolist() == stream[: rows.numel()]
    assert rows[0, 0].item() == data.tokenizer.encode(DOCS[0], add_special_tokens=False)[0]
    assert data.tokenizer.bos_token_id is None or data.tokenizer.bos_token_id not in rows


def test_training_order_depends_only_on_seed():
    a = list(islice(ResumableSampler(50, seed=3), 120))
    b = list(islice(ResumableSampler(50, seed=3), 120))
    c = list(islice(ResumableSampler(50, seed=4), 120))
    assert a == b and a != c
    assert sorted(a[:50]) == list(range(50)) and a[:50] != a[50:100]


def test_sampler_started_at_a_position_continues_the_same_order():
    full = list(islice(ResumableSampler(50, seed=1), 200))
    assert list(islice(ResumableSampler(50, seed=1, start=77), 100)) == full[77:177]


def test_ranks_split_each_global_block_without_overlap():
    full = list(islice(ResumableSampler(50, seed=1), 64))
    r0 = list(islice(ResumableSampler(50, seed=1, rank=0, world=2), 32))
    r1 = list(islice(ResumableSampler(50, seed=1, rank=1, world=2), 32))
    assert r0 == full[0::2] and r1 == full[1::2]


def test_held_out_split_is_disjoint_from_training(tmp_path):
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps({"text": f"document number {i} " * 5}) + "\n" for i in range(200)))
    data = PackedTextData("assets/tokenizer-tiny", seq_len=16, train_files=[str(path)], val_fraction=0.1)
    data.setup("fit")
    train = {tuple(r) for r in data.train_data.tolist()}
    assert len(data.val_data) > 0 and not any(tuple(r) in train for r in data.val_data.tolist())


def test_streaming_rows_match_packing_and_resume_by_skipping(jsonl):
    tokenizer = load_tokenizer("assets/tokenizer-tiny")
    stream = datasets.load_dataset("json", data_files=jsonl, split="train", streaming=True)
    rows = [r.tolist() for r in StreamingRows(stream, tokenizer, seq_len=4, text_field="text")]
    expected = expected_stream(tokenizer)
    assert sum(rows, []) == expected[: len(rows) * 4]
    assert [r.tolist() for r in StreamingRows(stream, tokenizer, 4, "text", start=3)] == rows[3:]


def test_tokenizer_without_eos_is_rejected(tmp_path):
    tokenizer = load_tokenizer("assets/tokenizer-tiny")
    tokenizer.eos_token = None
    tokenizer.save_pretrained(tmp_path / "tok")
    with pytest.raises(ValueError, match="has no eos token"):
        load_tokenizer(str(tmp_path / "tok"))


@pytest.mark.parametrize(
    "fields, source",
    [
        ({"train_files": ["data/tiny/val.jsonl"]}, "files"),
        ({"train_files": ["data/tiny/val.jsonl"], "dataset": "allenai/c4"}, "files"),
        ({"dataset": "allenai/c4"}, "streaming"),
        ({"dataset": "allenai/c4", "streaming": False}, "hub"),
    ],
    ids=["files", "files-over-dataset", "streamed-hub", "whole-hub"],
)
def test_one_source_is_picked_from_the_fields(fields, source):
    assert PackedTextData("assets/tokenizer-tiny", **fields).source == source


@pytest.fixture
def hub_dir(tmp_path) -> str:
    """The tiny corpus as a dataset directory, loaded as a hub dataset is (train and validation splits)."""
    (tmp_path / "ds").mkdir()
    for split, path in zip(("train", "validation"), (*TINY["train_files"], *TINY["val_files"])):
        shutil.copy(path, tmp_path / "ds" / f"{split}.jsonl")
    return str(tmp_path / "ds")


def test_a_whole_hub_dataset_gives_the_rows_and_texts_of_its_files(hub_dir):
    hub = PackedTextData("assets/tokenizer-tiny", seq_len=32, dataset=hub_dir, streaming=False, val_rows=None)
    files = PackedTextData("assets/tokenizer-tiny", seq_len=32, **TINY, val_rows=None)
    hub.setup("fit")
    files.setup("fit")
    assert torch.equal(hub.train_data, files.train_data) and torch.equal(hub.val_data, files.val_data)
    assert hub.validation_texts(5) == files.validation_texts(5)


def test_a_streamed_hub_dataset_validates_on_the_rows_and_texts_of_its_files(hub_dir):
    stream = PackedTextData("assets/tokenizer-tiny", seq_len=32, batch_size=4, dataset=hub_dir, val_rows=10)
    files = PackedTextData("assets/tokenizer-tiny", seq_len=32, **TINY, val_rows=10)
    stream.setup("fit")
    files.setup("fit")
    assert torch.equal(torch.cat(list(stream.val_dataloader())), files.val_data)
    assert stream.validation_texts(5) == files.validation_texts(5)


def test_a_streamed_training_loader_resumed_at_a_step_continues_the_same_batches(hub_dir):
    stream = PackedTextData("assets/tokenizer-tiny", seq_len=32, batch_size=4, dataset=hub_dir, shuffle_buffer=100)
    full = list(islice(stream.train_dataloader(), 5))
    stream.trainer = SimpleNamespace(global_step=2, accumulate_grad_batches=1, world_size=1, global_rank=0)
    resumed = list(islice(stream.train_dataloader(), 3))
    assert all(torch.equal(a, b) for a, b in zip(resumed, full[2:], strict=True))


def test_a_new_source_location_replaces_the_old_one_whole_but_keeps_the_text_column():
    recorded = DataSource(
        dataset="allenai/c4", dataset_config="en", train_split="tr", val_fraction=0.5, text_field="body"
    )
    assert recorded.replaced({"train_files": ["a.jsonl"], "val_files": None}) == DataSource(
        train_files=["a.jsonl"], text_field="body"
    )
    assert recorded.replaced({"val_split": "test"}) == DataSource(
        dataset="allenai/c4",
        dataset_config="en",
        train_split="tr",
        val_split="test",
        val_fraction=0.5,
        text_field="body",
    )


def test_the_prepare_command_names_only_what_differs_from_the_defaults():
    assert DataSource(dataset="allenai/c4", dataset_config="en").prepare_command("data/c4", "gpt2") == (
        "python -m vscale.prepare --tokenizer gpt2 --dataset allenai/c4 --dataset_config en --out data/c4"
    )
    files = DataSource(train_files=["a b.txt"], val_fraction=0.1, text_field="body")
    assert (
        files.prepare_command("out", "tok")
        == "python -m vscale.prepare --tokenizer tok --files 'a b.txt' --val_fraction 0.1 --text_field body --out out"
    )
