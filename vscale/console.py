"""What a command prints: the messages a user can act on, and one line for an error the user can fix.

Lightning, torch and wandb print notices that a vscale user cannot act on (an advert for another
logger, a deprecation inside Lightning, a hint to use `srun` where a local run is meant);
`quiet()` filters exactly those, by their text, and nothing else. A `--config` YAML that does not parse is
refused naming the file, the line and the column (`read_config`).
"""

import argparse
import logging
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import yaml

from vscale.errors import ConfigError, UserError

UNACTIONABLE_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)",  # inside Lightning's _pytree, with torch >= 2.10
    r"The `srun` command is available on your system but is not used",  # a local run on a Slurm login node
    # every resume; a fresh run there is refused (vscale.train.config)
    r"Checkpoint directory .* exists and is not empty",
)
ADVERTS = ("💡 Tip",)  # litlogger / litmodels, through Lightning's rank-zero logger
RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _DropPrefixes(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def quiet() -> None:
    """Silence the notices above; idempotent."""
    for pattern in UNACTIONABLE_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropPrefixes) for f in logger.filters):
            logger.addFilter(_DropPrefixes(ADVERTS))


@contextmanager
def one_line_errors(help_command: str | None = None):
    """For the command-line entry points: an error raised on purpose (`vscale.errors.UserError`: a bad
    field, an unreachable hub, a run directory already in use, prepared data not made yet, ...) is the
    user's to fix and the message says how, so it ends the program in one line instead of a traceback;
    so does a command line the parser refuses (a misspelled option, a value outside its choices), with a
    pointer to `help_command` instead of the whole usage."""
    try:
        yield
    except UserError as error:
        sys.exit(f"error: {error}")
    except argparse.ArgumentError as error:
        hint = f" ({help_command} lists the options)" if help_command else ""
        sys.exit(f"error: {' '.join(str(error).split())}{hint}")


class OneLineParser(argparse.ArgumentParser):
    """argparse for the project's commands: a refused command line (or a refusal through `error`) ends in one
    line naming the option and the fix, with a pointer to --help instead of the usage."""

    def error(self, message: str):
        print(f"error: {message} ({self.prog} --help lists the options)", file=sys.stderr)
        sys.exit(2)


def read_config(path: str | Path):
    """A YAML config file's contents; one that does not parse is refused naming the file, line and column
    (PyYAML's own message, as jsonargparse passes it on, names the text only as "<unicode string>")."""
    text = Path(path).read_text()
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}{_yaml_problem(error, text)}. Fix the YAML there and run again.") from None


def _yaml_problem(error: yaml.YAMLError, text: str) -> str:
    """', line N, column M: what is wrong (while parsing what, from where)', from PyYAML's 0-based marks."""
    if isinstance(error, yaml.reader.ReaderError):  # a character YAML does not allow; only its offset is known
        line, start = text.count("\n", 0, error.position), text.rfind("\n", 0, error.position) + 1
        return (
            f", line {line + 1}, column {error.position - start + 1}: "
            f"unacceptable character #x{error.character:04x} ({error.reason})"
        )
    mark = isinstance(error, yaml.MarkedYAMLError) and (error.problem_mark or error.context_mark)
    if not mark:
        return f": {' '.join(str(error).split())}"
    context, start = error.context, error.context_mark
    since = ""
    if context and start not in (None, mark):
        since = f" ({context} at line {start.line + 1}, column {start.column + 1})"
    return f", line {mark.line + 1}, column {mark.column + 1}: {error.problem or context}{since}"


def check_config_files(argv) -> None:
    """Read each `--config FILE` (`-c FILE`, `--config=FILE`) of a command line before jsonargparse does, so that
    one that does not parse is refused by `read_config`; a dict of arguments, or a config given as a YAML string,
    is left to jsonargparse."""
    if not isinstance(argv, (list, tuple)):
        return
    for i, arg in enumerate(map(str, argv)):
        option, eq, value = arg.partition("=")
        if option in ("-c", "--config") and (eq or i + 1 < len(argv)):
            path = Path(value if eq else str(argv[i + 1]))
            if path.is_file():
                read_config(path)
