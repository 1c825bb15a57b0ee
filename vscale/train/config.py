"""The checks on a run directory that must pass before any compute is spent: continue a run or leave it alone,
never resume from a damaged checkpoint."""

import zipfile
from pathlib import Path

from vscale.errors import DamagedCheckpoint, RunDirInUse


def check_run_dir(run_dir: Path, ckpt_path: str | None) -> str | None:
    """The checkpoint a run starts from. A run directory that holds checkpoints is continued (`--ckpt_path
    last`) or left alone, never trained over from scratch (which mixes two runs' metrics and checkpoints);
    `last` in a directory without checkpoints is a first run (None); a damaged checkpoint is refused,
    naming the newest one that is whole."""
    found = sorted((run_dir / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if ckpt_path is None and found:
        raise RunDirInUse(
            f"run directory {run_dir} already holds checkpoints ({', '.join(p.name for p in found[-3:])}); "
            f"continue it with --ckpt_path last (raise trainer.max_steps to extend a finished run), or start "
            f"another with --run.name=<new name> or --run.experiment=<new experiment>."
        )
    if ckpt_path == "last" and not found:
        return None
    path = run_dir / "checkpoints" / "last.ckpt" if ckpt_path == "last" else Path(ckpt_path) if ckpt_path else None
    if path is not None and path.is_file() and not whole(path):
        good = next((p for p in reversed(found) if p != path and whole(p)), None)
        fix = (
            f"resume from the newest whole one with --ckpt_path {good}"
            if good
            else "no other checkpoint there is whole: start afresh with --run.name=<new name>"
        )
        raise DamagedCheckpoint(
            f"--ckpt_path {ckpt_path}: {path} is damaged (cut short or overwritten, not a whole checkpoint); {fix}."
        )
    return ckpt_path


def whole(path: Path) -> bool:
    """Whether a checkpoint file is complete: torch.save writes a zip archive, whose directory is at its end."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
