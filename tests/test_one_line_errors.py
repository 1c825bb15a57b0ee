"""Every error the project raises on purpose ends the real entry point (train.py, eval.py, prepare, the launcher) in
one line naming the field and the fix, with a non-zero exit status: no traceback, no usage wall."""

import subprocess
import sys

import pytest
from conftest import QUIET, train


def refusal(*command: str) -> str:
    """The last line of stderr of a refused command, after checking it is the only error line and nothing else is
    dumped."""
    result = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr and not any(line.startswith("usage:") for line in lines), result.stderr
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], result.stderr
    return lines[-1]


TRAIN = ["train.py", "fit", "--config", "configs/tiny.yaml", *QUIET]


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "--data.train_files=[data/tiny/nope.jsonl]",
            "error: data.train_files: no such file(s) ['data/tiny/nope.jsonl']; give existing",
        ),
        (
            "--data.train_files=data/tiny/nope.jsonl",
            "error: data.train_files: no such file(s) ['data/tiny/nope.jsonl']; give existing",
        ),
        (
            "--model.attention=flashy",
            "error: unknown attention arm 'flashy' (model.attention, "
            "or apply_interventions(attention=...)); choose one of",
        ),
        ("--model.lr=-0.001", "error: model.lr=-0.001 must be > 0."),
        (
            "--model.vscal=learned",
            "error: ambiguous option: --model.vscal=learned could match --model.vscale, --model.vscale_lambda",
        ),
        (
            "--model.vscale=maybe",
            "error: Parser key \"model.vscale\": Expected a typing.Literal['off', "
            "'fixed', 'learned', 'backward']. Got value: maybe",
        ),
    ],
    ids=["missing-file", "one-file-not-a-list", "arm", "negative-lr", "misspelled-option", "bad-choice"],
)
def test_train_refuses_bad_input_in_one_line(tmp_path, override, message):
    line = refusal(*TRAIN, f"--run.root={tmp_path}", override)
    assert line.startswith(message), line
    if "Parser key" in message or "ambiguous" in message:
        assert line.endswith("(python train.py fit --help lists the options)")


def test_a_damaged_last_checkpoint_is_named_and_the_previous_whole_one_offered(tmp_path):
    train(tmp_path, "--trainer.max_steps=2", "--run.ckpt_every=1", "--run.val_every_n_steps=1000")
    ckpts = tmp_path / "tiny" / "off-seed0" / "checkpoints"
    last = ckpts / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    line = refusal(*TRAIN, f"--run.root={tmp_path}", "--ckpt_path=last", "--trainer.max_steps=3")
    assert line == (
        f"error: --ckpt_path last: {last} is damaged (cut short or overwritten, not a whole checkpoint); "
        f"resume from the newest whole one with --ckpt_path {ckpts / 'step0000002.ckpt'}."
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["run", "--ckpt", "[{tmp}]"],
            "error: checkpoint '{tmp}': a directory with no model in it (no config.json); "
            "give a .ckpt written by train.py",
        ),
        (
            ["run", "--ckpt", "{tmp}/last.ckpt"],
            "error: checkpoint '{tmp}/last.ckpt' does not exist; give a .ckpt written by train.py",
        ),
        (
            ["runn"],
            "error: argument subcommand: invalid choice: 'runn' (choose from 'run', "
            "'compare', 'export', 'profile', 'truncate', 'interpolate')",
        ),
    ],
    ids=["empty-directory", "one-path-not-a-list", "misspelled-command"],
)
def test_eval_refuses_bad_input_in_one_line(tmp_path, args, message):
    line = refusal("eval.py", *(a.format(tmp=tmp_path) for a in args))
    assert line.startswith(message.format(tmp=tmp_path)), line


def test_prepare_and_the_launcher_refuse_bad_input_in_one_line(tmp_path):
    line = refusal(
        "-m",
        "vscale.prepare",
        "--tokenizer",
        "assets/tokenizer-tiny",
        "--files",
        "nope.jsonl",
        "--out",
        str(tmp_path / "p"),
    )
    assert line.startswith("error: --files: no such file(s) ['nope.jsonl']")
    line = refusal(
        "-m", "vscale.launch", "--config", "configs/tiny.yaml", "--gpus-per-node", "0", "--modes", "maybe", "--dry-run"
    )
    assert (
        line == "error: --modes maybe: unknown; choose from off, fixed, learned, "
        "backward (python -m vscale.launch --help lists the options)"
    )


def test_the_training_help_lists_what_applies_with_whole_group_headers():
    result = subprocess.run(
        [sys.executable, "train.py", "fit", "--help"], capture_output=True, text=True, timeout=120, check=True
    )
    assert "--optimizer" not in result.stdout and "--lr_scheduler" not in result.stdout, (
        "the module configures AdamW itself"
    )
    assert (
        "Packed-row language-modeling data: prepared token files, local files, a hub dataset, or a synthetic task:"
        in result.stdout
    )
    assert "--diagnostics.every_n_steps" in result.stdout


def test_a_first_run_with_ckpt_path_last_starts_fresh_without_a_warning(tmp_path, recwarn):
    train(tmp_path, "--trainer.max_steps=1", "--run.val_every_n_steps=1000", "--ckpt_path=last")
    assert (tmp_path / "tiny" / "off-seed0" / "checkpoints" / "last.ckpt").is_file()
    assert not [
        w for w in recwarn if "no last checkpoint" in str(w.message) or "checkpoint available" in str(w.message)
    ]
