"""The eval.py option dataclasses (vscale.eval.options and each command's own): their fields are the flags of
`eval.py <command>`, each listed with its doc, and a bad field is refused where it enters, naming its flag."""

import dataclasses

import pytest
from conftest import printed_help

from vscale.eval.cli import main as eval_main
from vscale.eval.interpolate import InterpolateOptions
from vscale.eval.options import EvalData
from vscale.eval.profile import ProfileOptions
from vscale.eval.run import RunOptions
from vscale.eval.truncate import TruncateOptions

COMMANDS = {
    "run": RunOptions,
    "truncate": TruncateOptions,
    "interpolate": InterpolateOptions,
    "profile": ProfileOptions,
}


def flag_docs(help_text: str) -> dict[str, str]:
    """Each `  --flag` of argparse's help with its text: what follows the flag on its line (after two spaces) and the
    indented lines below it, since argparse moves the text to the next line when the flag part is long."""
    docs, flag = {}, None
    for line in help_text.splitlines():
        if line.startswith("  -"):
            head, _, text = line.strip().partition("  ")
            flag = head.split()[0].rstrip(",") if head.startswith("--") else None
            if flag:
                docs[flag] = text.strip()
        elif flag and line.startswith("   "):
            docs[flag] = f"{docs[flag]} {line.strip()}".strip()
        else:
            flag = None
    return docs


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_lists_every_field_of_the_options_as_a_flag_with_its_doc(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")
    help_text = printed_help(eval_main, [command, "--help"], capsys)
    docs = flag_docs(help_text)
    for field in dataclasses.fields(COMMANDS[command]):
        assert f"--{field.name}" in docs, f"--{field.name} is not listed:\n{help_text}"
        assert docs[f"--{field.name}"].split("(type:")[0].strip(), (
            f"--{field.name} has no doc: {docs[f'--{field.name}']!r}"
        )


@pytest.mark.parametrize(
    "options, message",
    [
        (
            lambda: RunOptions(["a.ckpt", "b.ckpt"], label=["one"]),
            r"--label: give one distinct label per --ckpt \(2 checkpoints",
        ),
        (lambda: EvalData(seq_len=8), r"--seq_len: diagnostics need rows of at least 32 tokens"),
        (lambda: EvalData(batch_size=0), r"--batch_size 0: give at least 1"),
        (lambda: TruncateOptions(["a.ckpt"], batches=0), r"--batches 0: give at least 1"),
        (
            lambda: InterpolateOptions(["a.ckpt"], prompts=["one"], tokens=[" a"]),
            r"--tokens \[' a'\] / --prompts \['one'\]",
        ),
        (
            lambda: ProfileOptions(model="m", files=["data/tiny/val.jsonl"], dtype="float16"),
            r"--dtype 'float16': choose bfloat16, float32 or auto",
        ),
    ],
    ids=["label", "seq_len", "batch_size", "batches", "tokens", "dtype"],
)
def test_a_bad_option_is_refused_when_the_options_are_made_naming_its_flag(options, message):
    with pytest.raises(ValueError, match=message):
        options()


def test_a_single_value_of_a_list_option_becomes_a_list_of_one():
    o = RunOptions("a.ckpt", label="a", val_files="data/tiny/val.jsonl", quant="per_token", needle_context_lens=128)
    assert (o.ckpt, o.labels, o.val_files, o.quant, o.needle_context_lens) == (
        ["a.ckpt"],
        ["a"],
        ["data/tiny/val.jsonl"],
        ["per_token"],
        [128],
    )
