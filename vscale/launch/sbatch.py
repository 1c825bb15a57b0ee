"""sbatch scripts: a template filled in, its #SBATCH options and srun command read back, and the script written
into its run directory and submitted."""

import re
import shlex
import string
import subprocess
import sys
from pathlib import Path


def render(template: str, values: dict) -> str:
    """Fill ${name}; a line using a value that is None (an unset option) is left out."""
    lines = [string.Template(line) for line in template.splitlines(keepends=True)]
    kept = [t for t in lines if all(values[k] is not None for k in t.get_identifiers())]
    return "".join(t.substitute(values).rstrip() + "\n" for t in kept)


def sbatch_option(script: str, option: str) -> str | None:
    match = re.search(rf"^#SBATCH --{option}=(\S+)", script, re.MULTILINE)
    return match and match.group(1)


def train_command(script: str) -> list[str]:
    """What a script runs under srun (`python train.py fit ...`), split as the shell would."""
    (line,) = [l for l in script.replace("\\\n", " ").splitlines() if l.startswith("srun ")]
    return shlex.split(line.removesuffix("&"))[1:]


def submit(run_dir: Path, text: str, dry_run: bool) -> None:
    """Write the job's script into its run directory and `sbatch` it (print both with `dry_run`)."""
    path = run_dir / "job.sbatch"
    command = ["sbatch", "--parsable", str(path)]
    if dry_run:
        print(f"#### {path}\n{text}$ {shlex.join(command)}\n")
        return
    run_dir.mkdir(parents=True, exist_ok=True)  # Slurm opens --output there before the job starts
    path.write_text(text)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"sbatch {path} failed, the jobs printed above were submitted: {result.stderr.strip()}")
    print(result.stdout.strip().split(";")[0], run_dir, flush=True)
