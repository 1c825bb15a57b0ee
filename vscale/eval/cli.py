r"""`eval.py`: evaluate and compare checkpoints (method §3 and §5), one subcommand per file of this package.

python eval.py run --ckpt "[A.ckpt, B.ckpt]" --label "[baseline, vscale]" --out eval/tiny
python eval.py compare --run "[runs/tiny/off-seed0, runs/tiny/learned-seed0]" --out eval/tiny-curves
python eval.py export --ckpt runs/tiny/learned-seed0/checkpoints/last.ckpt --out export/tiny-learned
python eval.py profile --model Qwen/Qwen3-0.6B --dataset allenai/c4 --dataset_config en --out eval/profile-qwen3
python eval.py truncate --ckpt "[A.ckpt, B.ckpt]" --label "[baseline, vscale]" --out eval/truncate
python eval.py interpolate --ckpt "[A.ckpt, B.ckpt]" --prompts "[The cat sat on the, The dog sat on the]" \
    --layer 2 --out eval/interpolate
"""

import re
import sys

import jsonargparse
import yaml

from vscale.console import check_config_files, one_line_errors, quiet
from vscale.eval.compare import compare
from vscale.eval.export import export
from vscale.eval.interpolate import InterpolateOptions, interpolate
from vscale.eval.profile import ProfileOptions, profile
from vscale.eval.run import RunOptions, run
from vscale.eval.truncate import TruncateOptions, truncate

COMMANDS = {
    "run": RunOptions,
    "compare": compare,
    "export": export,
    "profile": ProfileOptions,
    "truncate": TruncateOptions,
    "interpolate": InterpolateOptions,
}
"""The subcommands: a function's parameters are its flags, as are an options dataclass's fields."""
MEASURE = {RunOptions: run, ProfileOptions: profile, TruncateOptions: truncate, InterpolateOptions: interpolate}
"""What runs on the options the command line gave."""


def _yaml12_loader():
    """A YAML loader whose booleans are only true/false (YAML 1.2), for values given on the command
    line: YAML 1.1 reads off/on/yes/no as booleans, so `--label "[off, learned]"` or `--tokens "[on,
    off]"` would not be strings. Bool options still take yes/no (jsonargparse parses them itself)."""

    class Loader(yaml.SafeLoader):
        yaml_implicit_resolvers = {
            first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    return lambda text: yaml.load(text, Loader=Loader), (yaml.YAMLError,)


def main(args: list[str] | None = None):
    quiet()
    load, errors = _yaml12_loader()
    jsonargparse.set_loader("yaml12", load, errors)
    with one_line_errors("python eval.py <command> --help"):
        check_config_files(sys.argv[1:] if args is None else args)
        parsed = jsonargparse.CLI(COMMANDS, args=args, parser_mode="yaml12", exit_on_error=False, return_instance=True)
        return MEASURE[type(parsed)](parsed) if type(parsed) in MEASURE else parsed
