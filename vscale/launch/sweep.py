"""Submit a paired sweep to Slurm: one sbatch job per (V-scale mode, seed) of one config.

    python -m vscale.launch --config configs/paper-0.1b.yaml --gpus-per-node 8 --dry-run
    python -m vscale.launch --config configs/paper-1b.yaml --nodes 4 --gpus-per-node 8 \\
        --time 24:00:00 --partition gpu -- --run.wandb_tags=[sweep1]

Each job is a template from slurm/ filled in (string.Template), written to <run dir>/job.sbatch
and submitted with `sbatch --parsable`. The pairing itself is train.py's: the data order depends
only on seed_everything, so off-seed0 and learned-seed0 see the same batches, and the wandb group
is run.experiment with the mode and seed as tags. The run directory,
run.root/run.experiment/<mode>-seed<seed>, does not depend on the job id, so a requeued job
resumes there with --ckpt_path=last. --nodes and --gpus-per-node fill both #SBATCH --nodes /
--ntasks-per-node and --trainer.num_nodes / --trainer.devices (overriding the YAML), so Slurm
and Lightning agree by construction; the launcher checks it on every script before submitting
any. Arguments after `--` go to train.py as they are.
"""

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from itertools import product
from pathlib import Path

import yaml

from vscale.console import OneLineParser, read_config
from vscale.launch.sbatch import render, sbatch_option, submit, train_command
from vscale.model import ARMS, MODES
from vscale.runs import RunConfig, RunId
from vscale.runs.steps import accumulation

REPO = Path(__file__).resolve().parents[2]  # where train.py is; every job runs there (--chdir)
# train.py flags the launcher sets itself, and the launcher flag to use instead
SET_HERE = {
    "--model.vscale": "--modes",
    "--model.attention": "--attention",
    "--seed_everything": "--seeds",
    "--trainer.num_nodes": "--nodes",
    "--trainer.devices": "--gpus-per-node",
    "--ckpt_path": "nothing (always last, to resume)",
}


def parse_args(argv: list[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace, list[str]]:
    cut = argv.index("--") if "--" in argv else len(argv)
    argv, overrides = argv[:cut], argv[cut + 1 :]
    p = OneLineParser(
        prog="python -m vscale.launch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--config", required=True, type=Path, help="train.py YAML config; its run: section names the run directories"
    )
    p.add_argument(
        "--modes",
        nargs="+",
        default=[["off", "learned"]],
        type=_items,
        help=f"V-scale modes ({', '.join(MODES)}), space- or comma-separated (default: off learned)",
    )
    p.add_argument(
        "--attention",
        nargs="+",
        type=_items,
        help=f"attention arms ({', '.join(ARMS)}), space- or comma-separated (default: the config's model.attention)",
    )
    p.add_argument(
        "--seeds",
        nargs="+",
        default=[[0, 1, 2]],
        type=lambda s: [int(x) for x in _items(s)],
        help="seed_everything values, space- or comma-separated (default: 0 1 2)",
    )
    add_slurm_options(p)
    p.add_argument(
        "--dry-run", action="store_true", help="print every script and its sbatch command; write and submit nothing"
    )
    p.add_argument(
        "--local",
        action="store_true",
        help="no Slurm: run each job's train.py command here, seed by seed (every mode of a seed before the next), "
        "one after another (e.g. a fine-tuning pair)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="with --local: run this many jobs at a time, the CPU threads shared among them (default: 1)",
    )
    return p, p.parse_args(argv), overrides


def add_slurm_options(p: argparse.ArgumentParser) -> None:
    """What each job asks Slurm for: nodes and GPUs (which the trainer is given too), template, time and the rest."""
    p.add_argument(
        "--nodes", type=int, default=1, help="nodes per job: #SBATCH --nodes and trainer.num_nodes (default: 1)"
    )
    p.add_argument(
        "--gpus-per-node",
        type=int,
        required=True,
        help="GPUs per node, one task each: --ntasks-per-node and trainer.devices; 0 = CPU, one task per node",
    )
    p.add_argument(
        "--template",
        help="sbatch template, a path or a name in slurm/ "
        "(default: cpu with 0 GPUs, else single-node for 1 node, else multi-node)",
    )
    p.add_argument("--time", help="time limit, e.g. 24:00:00; USR1 90 s before it makes the run checkpoint and requeue")
    p.add_argument("--partition", help="Slurm partition (default: the cluster's)")
    p.add_argument("--account", help="Slurm account to charge")
    p.add_argument("--cpus-per-task", type=int, help="CPUs per task (per GPU), e.g. for data loading")
    p.add_argument("--mem", help="memory per node, e.g. 200G")


def _items(text: str) -> list[str]:
    """One command-line word of a list: `a,b` or `a` (lists may also be space-separated)."""
    return [item for item in text.split(",") if item]


def find_template(name: str) -> Path | None:
    for path in (Path(name), REPO / "slurm" / name, REPO / "slurm" / f"{name}.sbatch"):
        if path.is_file():
            return path
    return None


def config_section(config: Path, overrides: list[str], section: str) -> dict:
    """One section of the YAML (run:, data:) with its --<section>.* overrides after `--`, as train.py will see it."""
    fields = dict((read_config(config) or {}).get(section) or {})
    for i, arg in enumerate(overrides):
        key, eq, value = arg.partition("=")
        if key.startswith(f"--{section}."):
            fields[key.removeprefix(f"--{section}.")] = yaml.safe_load(value if eq else overrides[i + 1])
    return fields


def run_config(config: Path, overrides: list[str]) -> RunConfig:
    return RunConfig(**config_section(config, overrides, "run"))


def run_here(script: str, dry_run: bool, threads: int | None = None) -> None:
    """The script's training command, run directly with this Python in the repository (with `threads` CPU threads)."""
    command = [sys.executable, *train_command(script)[1:]]
    print(f"$ {shlex.join(command)}", flush=True)
    if not dry_run:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else None
        subprocess.run(command, cwd=REPO, check=True, env=env)


def main(argv: list[str] | None = None) -> None:
    p, args, overrides = parse_args(list(sys.argv[1:] if argv is None else argv))
    # Every check runs before the first submission, so bad input never leaves half a sweep queued.
    template, run, overrides = check(p, args, overrides)
    # Seed by seed, every arm of a seed before the next: a local sweep stopped midway leaves whole pairs.
    ids = [
        run.identity(mode, seed, attention)
        for seed, attention, mode in product(
            dict.fromkeys(args.seeds), dict.fromkeys(args.attention), dict.fromkeys(args.modes)
        )
    ]
    jobs = [(REPO / run_id.dir, script(p, template, run_id, args, overrides)) for run_id in ids]
    if not (args.dry_run or args.local) and shutil.which("sbatch") is None:
        p.error("sbatch is not on PATH: run on a Slurm login node, or add --dry-run to print the scripts")
    prepared = config_section(args.config, overrides, "data").get("prepared")
    if prepared and not (REPO / prepared / "meta.json").is_file():
        missing = (
            f"data.prepared={prepared!r} is not prepared yet (jobs run in {REPO}): run `python -m vscale.prepare "
            f"--config {args.config} --out {prepared}` first (see the config's header), "
            "or pass -- --data.prepared=null to stream"
        )
        if not args.dry_run:
            p.error(missing)
        print(f"warning: {missing}")
    if args.local:
        threads = max(1, (os.cpu_count() or 1) // args.jobs)
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda job: run_here(job[1], args.dry_run, threads if args.jobs > 1 else None), jobs))
        return
    for run_dir, text in jobs:
        submit(run_dir, text, args.dry_run)


def check(
    p: argparse.ArgumentParser, args: argparse.Namespace, overrides: list[str]
) -> tuple[Path, RunConfig, list[str]]:
    """The launcher's own options and the overrides after `--`, refused with `p.error` when wrong;
    returns the template, the run config and the overrides train.py gets."""
    if not args.config.is_file():
        p.error(f"--config {args.config}: no such file")
    if args.nodes < 1:
        p.error(f"--nodes {args.nodes}: must be at least 1")
    if args.jobs < 1 or (args.jobs > 1 and not args.local):
        p.error(
            f"--jobs {args.jobs}: give a number >= 1, "
            "and more than 1 only with --local (Slurm schedules submitted jobs itself)"
        )
    args.modes, args.seeds = [m for ms in args.modes for m in ms], [s for ss in args.seeds for s in ss]
    args.attention = (
        [a for arms in args.attention for a in arms]
        if args.attention
        else [config_section(args.config, overrides, "model").get("attention") or "softmax"]
    )
    for field, given, known in (("--modes", args.modes, MODES), ("--attention", args.attention, ARMS)):
        if unknown := [x for x in given if x not in known]:
            p.error(f"{field} {' '.join(unknown)}: unknown; choose from {', '.join(known)}")
    if args.gpus_per_node < 0:
        p.error(f"--gpus-per-node {args.gpus_per_node}: must be at least 0 (0 trains on CPU)")
    name = args.template or ("cpu" if args.gpus_per_node == 0 else "single-node" if args.nodes == 1 else "multi-node")
    template = find_template(name)
    if template is None:
        names = sorted(t.stem for t in (REPO / "slurm").glob("*.sbatch"))
        p.error(f"--template {name}: no such file; give a path or one of {names}")
    own = {"--" + k.replace("_", "-") for k in vars(args)} - {"--config"}  # train.py takes a second --config
    for arg in overrides:
        key = arg.split("=")[0]
        if key in SET_HERE:
            p.error(f"{arg} after --: the launcher sets it; use {SET_HERE[key]}")
        if key in own:
            p.error(f"{arg} after --: arguments after -- go to train.py; put launcher options before --")
    try:
        run = run_config(args.config, overrides)
    except (TypeError, IndexError, yaml.YAMLError) as e:
        p.error(f"--config {args.config}: bad run section or --run.* override: {e}")
    if run.name:
        p.error(f"--config {args.config}: run.name={run.name!r} would put every job in one directory; remove it")
    arithmetic = check_batch(p, args, overrides)
    if arithmetic and args.dry_run:
        print(arithmetic)
    return template, run, (["--trainer.accelerator=cpu"] if args.gpus_per_node == 0 else []) + overrides


def check_batch(p: argparse.ArgumentParser, args: argparse.Namespace, overrides: list[str]) -> str | None:
    """data.global_batch divides over the devices asked for; returns the batch arithmetic of each job, in one line."""
    data = config_section(args.config, overrides, "data")
    if data.get("global_batch") is None:
        return None
    devices, batch = (args.gpus_per_node or 1) * args.nodes, data.get("batch_size", 8)
    try:
        given = config_section(args.config, overrides, "trainer").get("accumulate_grad_batches", 1)
        accumulate = accumulation(data["global_batch"], batch, devices, given)
    except ValueError as e:
        p.error(f"--nodes {args.nodes} x --gpus-per-node {args.gpus_per_node}: {e}")
    return (
        f"global batch per job: data.batch_size {batch} x {devices} device(s) ({args.nodes} node(s) x "
        f"{args.gpus_per_node or 1}) x accumulate_grad_batches {accumulate} (derived) = {batch * devices * accumulate} "
        "rows per optimizer step"
    )


def script(
    p: argparse.ArgumentParser, template: Path, run_id: RunId, args: argparse.Namespace, overrides: list[str]
) -> str:
    """The sbatch script of one job, checked to give Slurm and the trainer the same nodes and devices."""
    devices = args.gpus_per_node or 1
    values = dict(
        job_name=f"{run_id.experiment}-{run_id.name}",
        nodes=args.nodes,
        devices=devices,
        gpus_per_node=args.gpus_per_node or None,
        cpus_per_task=args.cpus_per_task,
        mem=args.mem,
        time=args.time,
        partition=args.partition,
        account=args.account,
        run_dir=REPO / run_id.dir,
        repo=REPO,
        config=shlex.quote(str(args.config.resolve())),
        attention=run_id.attention,
        mode=run_id.mode,
        seed=run_id.seed,
        overrides=shlex.join(overrides),
    )  # jobs run in REPO: a relative run.root is relative to it
    try:
        text = render(template.read_text(), values)
    except (KeyError, ValueError) as e:
        p.error(f"--template {template}: a placeholder the launcher does not fill, or a stray $: {e!r}")
    for option, flag, want in (("nodes", "--nodes", args.nodes), ("ntasks-per-node", "--gpus-per-node", devices)):
        if sbatch_option(text, option) != str(want):
            p.error(
                f"--template {template}: #SBATCH --{option}={sbatch_option(text, option)} but {flag} "
                f"gives the trainer {want}; pick a template that matches, or change {flag}"
            )
    return text
