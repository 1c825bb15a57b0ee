"""The Slurm facts a stopping run needs: its job, whether a SIGTERM means the time limit (requeue)
or a cancel (respect it), and the requeue itself. Measured on Slurm 22.05: at the time limit and
on `scancel` the job is COMPLETING in both cases; only the time limit sets Reason=TimeLimit."""

import os
import subprocess


def job_id() -> str | None:
    """This job's id as `scontrol` wants it (array tasks as `<job>_<task>`); None outside Slurm."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array:
        return f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def _scontrol(*args: str) -> str:
    return subprocess.run(["scontrol", *args], capture_output=True, text=True, check=True, timeout=60).stdout


def hit_time_limit(job: str) -> bool:
    fields = dict(f.split("=", 1) for f in _scontrol("show", "job", "-o", job).split() if "=" in f)
    return fields.get("Reason") == "TimeLimit"


def requeue(job: str) -> None:
    _scontrol("requeue", job)
