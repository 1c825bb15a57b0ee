"""The errors a user fixes from the message alone: each says which field or flag is wrong and what to do.

They live at the bottom of the package, so any stage raises them and the entry points
(`vscale.console.one_line_errors`) print them as one line without importing the stages.
"""


class UserError(Exception):
    """Bad input or a missing prerequisite, raised on purpose; the message names the field and the fix."""


class HubUnreachable(UserError, OSError):
    """A hub name was given, the hub could not be reached, and nothing is cached for it."""


class RunDirInUse(UserError, FileExistsError):
    """A fresh run was asked for in a directory that holds another run's checkpoints."""


class PreparedDataMissing(UserError, FileNotFoundError):
    """`data.prepared` names a directory that `python -m vscale.prepare` has not (fully) written."""


class PrepareRefused(UserError, ValueError):
    """The preparation cannot start as asked; the message says what to change."""


class ConfigError(UserError, ValueError):
    """A field or flag holds a value the project cannot use; the message names it and the fix."""


class MissingInput(UserError, FileNotFoundError):
    """A file or directory a field names does not exist, or holds nothing the project can read."""


class DamagedCheckpoint(UserError, ValueError):
    """The checkpoint to resume from is not whole (a copy cut short, a disk filled up)."""
