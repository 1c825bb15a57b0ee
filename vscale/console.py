"""What a command prints: the messages a user can act on, and one line for an error the user can fix.

Lightning, torch and wandb print notices that a vscale user cannot act on (an advert for another
logger, a deprecation inside Lightning, a hint to use `srun` where a local run is meant);
`quiet()` filters exactly those, by their text, and nothing else.
"""

import argparse
import logging
import sys
import warnings
from contextlib import contextmanager

from vscale.errors import UserError

UNACTIONABLE_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)",  # inside Lightning's _pytree, with torch >= 2.10
    r"The `srun` command is available on your system but is not used",  # a local run on a Slurm login node
    r"Checkpoint directory .* exists and is not empty",  # every resume; a fresh run there is refused (vscale.train.config)
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
