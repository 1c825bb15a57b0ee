"""Writing a prepared directory whole or not at all: it is written beside its destination under a hidden
`.<name>.partial-<host>-<pid>` name and renamed into place once every file is complete and synced; a partial
directory left by a killed prepare is told from one still being written by its host and pid."""

import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def partial_path(out: str | Path) -> Path:
    """Where this process writes `out` before renaming it: named by host and pid, so that a later prepare can
    tell a directory left by a killed one (its process gone) from one another prepare is still writing."""
    out = Path(out)
    return out.parent / f".{out.name}.partial-{socket.gethostname()}-{os.getpid()}"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def abandoned_partials(out: str | Path) -> tuple[list[Path], list[Path]]:
    """(partial directories of `out` left by prepares on this host that no longer run, the other partial
    directories: prepares still running, or on other hosts, whose processes this host cannot see)."""
    out, host = Path(out), socket.gethostname()
    abandoned, others = [], []
    for path in sorted(out.parent.glob(f".{out.name}.partial-*")):
        owner, _, pid = path.name.removeprefix(f".{out.name}.partial-").rpartition("-")
        (abandoned if owner == host and pid.isdigit() and not _running(int(pid)) else others).append(path)
    return abandoned, others


@contextmanager
def partial_dir(out: str | Path) -> Iterator[Path]:
    """A fresh directory beside `out` to write into, renamed to `out` when the block completes
    and removed when it raises. A killed process leaves only the hidden partial directory."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(out)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(tmp)
    if out.exists():
        raise FileExistsError(f"{out} appeared while preparing (another prepare?); the finished data is left in {tmp}.")
    os.rename(tmp, out)
    _fsync_dir(out.parent)
