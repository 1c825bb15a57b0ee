"""Every error the project raises on purpose ends the real entry point (train.py, eval.py, prepare, the launcher) in
one line naming the field and the fix, with a non-zero exit status: no traceback, no usage wall. Each script is run
once as a real process; the other refusals call its `main` in this process inside the same wrapper, which is what
decides the line, without the ~12 s a fresh interpreter spends importing torch and Lightning."""

import subprocess
import sys

import pytest
from conftest import QUIET, printed_help, train

from vscale.console import one_line_errors
from vscale.eval.cli import main as eval_main
from vscale.train.cli import main as train_main


def last_line_of_a_refusal(stderr: str) -> str:
    """The last line of a refused command's stderr, after checking it is the only error line and nothing else is
    dumped (a traceback, a usage)."""
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr and not any(line.startswith("usage:") for line in lines), stderr
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], stderr
    return lines[-1]


def refusal(*command: str) -> str:
    """What a refused command ends with, run as a real process."""
    result = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0, result.stderr
    return last_line_of_a_refusal(result.stderr)


def refusal_in_process(main, args: list[str], capsys, help_command: str | None = None) -> str:
    """What a refused `main(args)` ends with, inside `one_line_errors` as train.py puts it (eval's main wraps itself):
    stderr as the interpreter would leave it, which prints a SystemExit's message as the last line."""
    with pytest.raises(SystemExit) as stop, one_line_errors(help_command):
        main(args)
    code = stop.value.code
    assert code not in (0, None), code
    return last_line_of_a_refusal(capsys.readouterr().err + (f"{code}\n" if isinstance(code, str) else ""))


TRAIN = ["train.py", "fit", "--config", "configs/tiny.yaml", *QUIET]
TRAIN_HELP = "python train.py fit --help"


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
def test_train_refuses_bad_input_in_one_line(tmp_path, capsys, override, message):
    line = refusal_in_process(train_main, [*TRAIN[1:], f"--run.root={tmp_path}", override], capsys, TRAIN_HELP)
    assert line.startswith(message), line
    if "Parser key" in message or "ambiguous" in message:
        assert line.endswith(f"({TRAIN_HELP} lists the options)")


def test_train_py_offers_fit_alone_and_eval_py_evaluates(capsys):
    line = refusal_in_process(train_main, ["validate", "--config", "configs/tiny.yaml"], capsys, TRAIN_HELP)
    assert line.startswith("error: argument subcommand: invalid choice: 'validate' (choose from 'fit')"), line


def test_train_py_ends_a_refused_command_in_one_line_pointing_to_its_help(tmp_path):
    line = refusal(*TRAIN, f"--run.root={tmp_path}", "--model.vscale=maybe")
    assert line.startswith('error: Parser key "model.vscale"') and line.endswith(f"({TRAIN_HELP} lists the options)")


def test_a_damaged_last_checkpoint_is_named_and_the_previous_whole_one_offered(tmp_path, capsys):
    train(tmp_path, "--trainer.max_steps=2", "--run.ckpt_every=1", "--run.val_every_n_steps=1000")
    ckpts = tmp_path / "tiny" / "off-seed0" / "checkpoints"
    last = ckpts / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    args = [*TRAIN[1:], f"--run.root={tmp_path}", "--ckpt_path=last", "--trainer.max_steps=3"]
    line = refusal_in_process(train_main, args, capsys, TRAIN_HELP)
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
def test_eval_refuses_bad_input_in_one_line(tmp_path, capsys, args, message):
    line = refusal_in_process(eval_main, [a.format(tmp=tmp_path) for a in args], capsys)
    assert line.startswith(message.format(tmp=tmp_path)), line


def test_eval_py_ends_a_refused_command_in_one_line(tmp_path):
    line = refusal("eval.py", "run", "--ckpt", str(tmp_path / "last.ckpt"))
    assert line.startswith(f"error: checkpoint '{tmp_path}/last.ckpt' does not exist; give a .ckpt written by train.py")


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


def test_the_training_help_lists_what_applies_with_whole_group_headers(capsys):
    help_text = printed_help(train_main, ["fit", "--help"], capsys)
    assert "--optimizer" not in help_text and "--lr_scheduler" not in help_text, "the module configures AdamW itself"
    assert (
        "Packed-row language-modeling data: prepared token files, local files, a hub dataset, or a synthetic task:"
        in help_text
    )
    assert "--diagnostics.every_n_steps" in help_text


def test_a_first_run_with_ckpt_path_last_starts_fresh_without_a_warning(tmp_path, recwarn):
    train(tmp_path, "--trainer.max_steps=1", "--run.val_every_n_steps=1000", "--ckpt_path=last")
    assert (tmp_path / "tiny" / "off-seed0" / "checkpoints" / "last.ckpt").is_file()
    assert not [
        w for w in recwarn if "no last checkpoint" in str(w.message) or "checkpoint available" in str(w.message)
    ]
