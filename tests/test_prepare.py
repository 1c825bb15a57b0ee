"""`python -m vscale.prepare` and training from its output (`data.prepared`), on the shipped tiny
corpus and tokenizer: the prepared rows are the packed rows, training on them is training on the
files, resume is exact, and every refusal names the field and the fix."""

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import metrics, train

from vscale.data import PackedTextData, TokenFileWriter, load_tokenizer, token_dtype
from vscale.data.prepare import main, parser
from vscale.data.prepared import PreparedRows

TINY = ["--config", "configs/tiny.yaml"]
TRAIN_FILE, VAL_FILE = "data/tiny/train.jsonl", "data/tiny/val.jsonl"
FILES = {"tokenizer": "assets/tokenizer-tiny", "train_files": [TRAIN_FILE], "val_files": [VAL_FILE]}
STEPS = ["--trainer.max_steps=10", "--run.val_every_n_steps=1000", "--trainer.log_every_n_steps=1"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("prepared") / "tiny")
    main([*TINY, "--out", out])
    return out


@pytest.fixture(scope="module")
def other_tokenizer(tmp_path_factory) -> str:
    """The tiny tokenizer with two added tokens: another vocabulary, the same eos."""
    tok = load_tokenizer("assets/tokenizer-tiny")
    tok.add_tokens(["<extra-a>", "<extra-b>"])
    path = tmp_path_factory.mktemp("tokenizer") / "tiny-extra"
    tok.save_pretrained(path)
    return str(path)


def all_rows(dataset) -> torch.Tensor:
    return torch.stack([dataset[i] for i in range(len(dataset))])


def run_losses(root, *overrides) -> dict[int, float]:
    train(root, *STEPS, *overrides)
    return metrics(root / "tiny" / "off-seed0", "train/loss")


@pytest.fixture(scope="module")
def prepared_losses(prepared, tmp_path_factory) -> dict[int, float]:
    """10 steps of configs/tiny.yaml on the prepared data, no workers: the reference run."""
    return run_losses(tmp_path_factory.mktemp("runs") / "prepared", f"--data.prepared={prepared}")


def assert_same_losses(got: dict, expected: dict):
    assert sorted(got) == sorted(expected) == list(range(10))
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-6), step


# what prepare writes


@pytest.mark.parametrize("seq_len", [128, 37])
def test_prepared_rows_are_the_packed_rows_of_the_files(prepared, seq_len):
    files = PackedTextData(**FILES, seq_len=seq_len, val_rows=None)
    files.setup("fit")
    rows = PackedTextData(tokenizer="assets/tokenizer-tiny", prepared=prepared, seq_len=seq_len, val_rows=None)
    rows.setup("fit")
    assert torch.equal(all_rows(rows.train_data), files.train_data)
    assert torch.equal(all_rows(rows.val_data), files.val_data)
    assert all_rows(rows.train_data).dtype == torch.int64


def test_held_out_documents_are_those_training_holds_out(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text(
        "".join(
            json.dumps({"text": f"document {i}: " + "words and more words " * (i % 7 + 1)}) + "\n" for i in range(300)
        )
    )
    out = str(tmp_path / "prepared")
    main(["--tokenizer", "assets/tokenizer-tiny", "--files", str(path), "--val_fraction", "0.1", "--out", out])
    files = PackedTextData(
        "assets/tokenizer-tiny", seq_len=16, train_files=[str(path)], val_fraction=0.1, val_rows=None
    )
    files.setup("fit")
    rows = PackedTextData("assets/tokenizer-tiny", seq_len=16, prepared=out, val_rows=None)
    rows.setup("fit")
    assert torch.equal(all_rows(rows.train_data), files.train_data)
    assert torch.equal(all_rows(rows.val_data), files.val_data)


def test_hub_dataset_with_max_documents_reads_its_first_documents_in_order(tmp_path):
    """A dataset name (here a local dataset directory, loaded like a hub one) with --max_documents,
    tokenized by two processes: the first documents, in their order."""
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "train.jsonl").write_text(open(TRAIN_FILE).read())
    (tmp_path / "ds" / "validation.jsonl").write_text(open(VAL_FILE).read())
    out = tmp_path / "prepared"
    main(
        [
            "--tokenizer",
            "assets/tokenizer-tiny",
            "--dataset",
            str(tmp_path / "ds"),
            "--max_documents",
            "100",
            "--val_documents",
            "10",
            "--num_proc",
            "2",
            "--out",
            str(out),
        ]
    )
    tok = load_tokenizer("assets/tokenizer-tiny")
    for split, path, n in (("train", TRAIN_FILE, 100), ("val", VAL_FILE, 10)):
        docs = [json.loads(line)["text"] for line in open(path)][:n]
        expected = [t for ids in tok(docs, add_special_tokens=False)["input_ids"] for t in [*ids, tok.eos_token_id]]
        assert np.fromfile(out / f"{split}.bin", dtype="<u2").tolist() == expected


def test_tiny_vocabulary_is_stored_as_uint16(prepared):
    meta = json.loads(open(f"{prepared}/meta.json").read())
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == 4096
    assert os.path.getsize(f"{prepared}/train.bin") == 2 * meta["splits"]["train"]["tokens"]


def test_vocabulary_past_65536_ids_is_stored_as_uint32(tmp_path):
    assert token_dtype(4096) == token_dtype(65536) == "uint16"
    assert token_dtype(65537) == token_dtype(151_665) == "uint32"
    with TokenFileWriter(tmp_path / "train.bin", token_dtype(70_000), eos_id=3) as writer:
        writer.add([[69_999, 65_536, 7], [1]])
    assert all_rows(PreparedRows(tmp_path / "train.bin", "uint32", seq_len=3)).tolist() == [
        [69_999, 65_536, 7],
        [3, 1, 3],
    ]


def test_meta_records_the_documents_and_tokens_of_each_split(prepared):
    meta = json.loads(open(f"{prepared}/meta.json").read())
    tok = load_tokenizer("assets/tokenizer-tiny")
    for split, path in (("train", TRAIN_FILE), ("val", VAL_FILE)):
        docs = [json.loads(line)["text"] for line in open(path)]
        tokens = sum(len(ids) + 1 for ids in tok(docs, add_special_tokens=False)["input_ids"])
        assert meta["splits"][split] == {"file": f"{split}.bin", "documents": len(docs), "tokens": tokens}
    assert meta["tokenizer"] == "assets/tokenizer-tiny" and meta["eos_id"] == tok.eos_token_id
    assert meta["source"]["train_files"] == [TRAIN_FILE] and meta["source"]["val_files"] == [VAL_FILE]


# prepare's guards


def test_preparing_the_same_source_again_is_a_no_op(prepared, capsys):
    before = {f: os.stat(f"{prepared}/{f}").st_mtime_ns for f in os.listdir(prepared)}
    main([*TINY, "--out", prepared])
    assert "already prepared" in capsys.readouterr().out
    assert {f: os.stat(f"{prepared}/{f}").st_mtime_ns for f in os.listdir(prepared)} == before


@pytest.mark.parametrize("change", ["tokenizer", "source"])
def test_preparing_something_else_into_an_existing_out_is_refused(prepared, other_tokenizer, change):
    other = ["--tokenizer", other_tokenizer] if change == "tokenizer" else ["--max_documents", "10"]
    with pytest.raises(SystemExit) as refused:
        main([*TINY, *other, "--out", prepared])
    assert str(refused.value.code).startswith(f"error: --out {prepared} holds another preparation")
    assert "choose another --out directory, or remove" in str(refused.value.code)


def test_killed_prepare_leaves_no_out(tmp_path):
    """SIGKILL while the partial directory exists: nothing at --out, and a new prepare completes."""
    corpus = tmp_path / "big.jsonl"
    corpus.write_text(
        "".join(json.dumps({"text": f"line {i} " + "tokens to tokenize " * 40}) + "\n" for i in range(40_000))
    )
    out = tmp_path / "killed"
    args = [
        sys.executable,
        "-m",
        "vscale.prepare",
        "--tokenizer",
        "assets/tokenizer-tiny",
        "--files",
        str(corpus),
        "--out",
        str(out),
    ]
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    partial = tmp_path / f".killed.partial-{socket.gethostname()}-{proc.pid}"
    deadline = time.monotonic() + 120
    while not partial.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert partial.exists(), "the partial directory should appear before tokenizing ends"
    time.sleep(0.2)
    assert proc.poll() is None, "still reading or tokenizing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and partial.exists()


def test_a_prepare_removes_what_a_killed_one_left_and_keeps_what_may_still_be_written(tmp_path, capsys):
    """The partial directory of a process that no longer runs on this host goes (at C4 scale, tens of GB); one of a
    running process, or of another host, stays with a note."""
    gone, alive = subprocess.Popen(["true"]), subprocess.Popen(["sleep", "60"])
    gone.wait()
    abandoned = tmp_path / f".small.partial-{socket.gethostname()}-{gone.pid}"
    running = tmp_path / f".small.partial-{socket.gethostname()}-{alive.pid}"
    elsewhere = tmp_path / ".small.partial-other-host-12345"
    for path in (abandoned, running, elsewhere):
        (path / "train.bin").parent.mkdir()
        (path / "train.bin").write_bytes(b"0" * 64)
    main(
        [
            "--tokenizer",
            "assets/tokenizer-tiny",
            "--files",
            "data/tiny/train.jsonl",
            "--val_files",
            "data/tiny/val.jsonl",
            "--out",
            str(tmp_path / "small"),
        ]
    )
    alive.kill()
    err = capsys.readouterr().err
    assert not abandoned.exists() and f"removed {abandoned}, left by a prepare on this host that no longer runs." in err
    assert running.exists() and elsewhere.exists() and f"note: {elsewhere} belongs to a prepare that is running" in err
    assert (tmp_path / "small" / "meta.json").is_file()


def test_chat_config_is_refused_by_prepare(tmp_path):
    with pytest.raises(SystemExit) as refused:
        main(["--config", "configs/finetune-tiny.yaml", "--out", str(tmp_path / "chat")])
    assert "data.messages_field='messages': chat data is not supported by prepare" in str(refused.value.code)
    assert not (tmp_path / "chat").exists()


def test_unreachable_hub_dataset_fails_in_one_line_and_leaves_nothing(tmp_path):
    with pytest.raises(SystemExit) as refused:
        main(
            [
                "--tokenizer",
                "assets/tokenizer-tiny",
                "--dataset",
                "no-such-org/no-such-dataset",
                "--out",
                str(tmp_path / "hub"),
            ]
        )
    assert str(refused.value.code).startswith(
        "error: --dataset='no-such-org/no-such-dataset': the Hugging Face hub could not be reached"
    )
    assert os.listdir(tmp_path) == []


def test_help_documents_every_option():
    options = [a for a in parser()._actions if a.option_strings]
    assert {
        "--config",
        "--out",
        "--tokenizer",
        "--files",
        "--val_files",
        "--dataset",
        "--num_proc",
        "--max_documents",
        "--val_documents",
    } <= {s for a in options for s in a.option_strings}
    assert all(a.help for a in options)


# training on prepared data


def test_training_on_prepared_data_gives_the_losses_of_training_on_the_files(prepared_losses, tmp_path):
    assert_same_losses(prepared_losses, run_losses(tmp_path))


def test_prepared_run_resumed_at_step_5_continues_exactly(prepared, prepared_losses, tmp_path):
    train(tmp_path, *STEPS, f"--data.prepared={prepared}", "--trainer.max_steps=5", "--run.ckpt_every=5")
    assert_same_losses(run_losses(tmp_path, f"--data.prepared={prepared}", "--ckpt_path=last"), prepared_losses)


def test_two_loader_workers_give_the_losses_of_none(prepared, prepared_losses, tmp_path):
    assert_same_losses(run_losses(tmp_path, f"--data.prepared={prepared}", "--data.num_workers=2"), prepared_losses)


def test_validation_texts_of_prepared_data_are_its_first_documents(prepared):
    texts = PackedTextData(tokenizer="assets/tokenizer-tiny", prepared=prepared, seq_len=128).validation_texts(20)
    assert texts == [json.loads(line)["text"] for line in open(VAL_FILE)][:20]


def test_loader_workers_do_not_receive_the_token_array(prepared):
    rows = PreparedRows(f"{prepared}/train.bin", "uint16", seq_len=128)
    rows[0]  # opens the memmap in this process
    import pickle

    assert len(pickle.dumps(rows)) < 1000 and torch.equal(pickle.loads(pickle.dumps(rows))[5], rows[5])


# training's checks on data.prepared


def test_missing_prepared_dir_is_refused_with_the_command_that_makes_it(tmp_path, capsys):
    out = str(tmp_path / "not-yet")
    with pytest.raises(
        FileNotFoundError, match=r"data.prepared='.*not-yet' does not exist; create it with: python -m vscale.prepare"
    ) as refused:
        PackedTextData(**FILES, prepared=out, seq_len=128)
    command = str(refused.value).split("create it with: ")[1].split(" (or train")[0]
    assert (
        command == "python -m vscale.prepare --tokenizer assets/tokenizer-tiny "
        f"--files {TRAIN_FILE} --val_files {VAL_FILE} --out {out}"
    )
    main(shlex.split(command)[3:])
    assert PackedTextData(**FILES, prepared=out, seq_len=128).source == "prepared"


def test_missing_prepared_dir_of_a_hub_source_names_its_prepare_command(tmp_path):
    out = str(tmp_path / "c4")
    with pytest.raises(
        FileNotFoundError,
        match=rf"create it with: python -m vscale.prepare --tokenizer assets/tokenizer-tiny --dataset allenai/c4 "
        rf"--dataset_config en --out {out} \(a large hub dataset: "
        r"add --max_documents N .*\) \(or train from the source itself with --data.prepared=null\)",
    ):
        PackedTextData(tokenizer="assets/tokenizer-tiny", prepared=out, dataset="allenai/c4", dataset_config="en")


def test_data_prepared_with_another_tokenizer_is_refused(prepared, other_tokenizer):
    with pytest.raises(
        ValueError,
        match=r"data.prepared='.*' was prepared with tokenizer 'assets/tokenizer-tiny' \(vocabulary 4096.*"
        r"data.tokenizer='.*tiny-extra' has vocabulary 4098",
    ):
        PackedTextData(tokenizer=other_tokenizer, prepared=prepared, seq_len=128)


def test_tokenizer_directory_changed_since_preparing_is_refused(tmp_path):
    tok = load_tokenizer("assets/tokenizer-tiny")
    tok.save_pretrained(tmp_path / "tok")
    out = str(tmp_path / "prepared")
    main(["--tokenizer", str(tmp_path / "tok"), "--files", VAL_FILE, "--val_files", VAL_FILE, "--out", out])
    tok.add_tokens(["<new>"])
    tok.save_pretrained(tmp_path / "tok")
    with pytest.raises(ValueError, match=r"vocabulary 4096, eos id 0\) but data.tokenizer=.* has vocabulary 4097"):
        PackedTextData(tokenizer=str(tmp_path / "tok"), prepared=out, seq_len=16)


def test_split_shorter_than_one_row_is_refused(tmp_path):
    out = str(tmp_path / "short")
    main(
        [
            "--tokenizer",
            "assets/tokenizer-tiny",
            "--files",
            VAL_FILE,
            "--val_files",
            VAL_FILE,
            "--val_documents",
            "1",
            "--out",
            out,
        ]
    )
    val_tokens = json.loads(open(f"{out}/meta.json").read())["splits"]["val"]["tokens"]
    with pytest.raises(
        ValueError, match=rf"its val split has {val_tokens} tokens, fewer than one row of data.seq_len={val_tokens + 1}"
    ):
        PackedTextData(tokenizer="assets/tokenizer-tiny", prepared=out, seq_len=val_tokens + 1)


def test_truncated_token_file_is_refused(tmp_path):
    out = tmp_path / "truncated"
    main(["--tokenizer", "assets/tokenizer-tiny", "--files", VAL_FILE, "--val_files", VAL_FILE, "--out", str(out)])
    data = (out / "train.bin").read_bytes()
    (out / "train.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="train.bin holds .* tokens, meta.json says .* prepare it again"):
        PackedTextData(tokenizer="assets/tokenizer-tiny", prepared=str(out), seq_len=16)
