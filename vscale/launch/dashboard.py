"""`python -m vscale.dashboard`: a wandb workspace for one study, built with `wandb-workspaces`, so that nobody
builds the same panels by hand before seeing anything.

    python -m vscale.dashboard --experiment bb --entity me --project vscale     # from runs/bb, online: prints the URL
    python -m vscale.dashboard --spec runs/bb/dashboard.json --entity me --project vscale   # a spec written offline

Sections: loss, the attention sink, the gradient sink, activations, V-scale's lambda, one panel per metric the
runs logged; a per-layer section (one panel per quantity, a line per layer); throughput; the figures `eval.py run
--wandb` logs. Every panel draws the runs of the experiment grouped by the config field that defines an arm
(`arm`: the run name minus its seed, logged top-level with `vscale`, `attention` and `model_size`). Without a
network (compute nodes) the spec is written as JSON into the experiment's directory, with the command that
creates the workspace later.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import wandb_workspaces.reports.v2 as wr
import wandb_workspaces.workspaces as ws

from vscale.console import OneLineParser, one_line_errors
from vscale.errors import MissingInput
from vscale.runs import read_metrics, wandb_offline

SECTIONS = (
    ("Loss", ("train/loss", "val/", "lr-", "train/skipped")),
    ("Attention sink", ("sink/",)),
    ("Gradient sink", ("gsink/",)),
    ("Activations", ("act/", "reshape/")),
    ("V-scale lambda", ("vscale/",)),
    (
        "Throughput",
        ("train/device/", "train/items", "train/peak", "train/time", "train/batches", "train/samples", "train/lengths"),
    ),
)
"""Sections of the workspace, each holding the metrics whose names start with one of its prefixes."""
GROUP_BY = "arm"
"""The wandb config field every panel groups runs by (train.py logs it top-level)."""
EVAL_FIGURES = ("sink_rate", "token0_ratio", "gsink_ratio", "grad_norm_violin", "alpha_heads", "needle_accuracy")
LAYER = re.compile(r"^(?P<quantity>.+)/layer_(?P<layer>\d+)$")


def spec(experiment: str, metrics: list[str]) -> dict:
    """The workspace for `experiment` as plain data:
    {name, experiment, group_by, sections: [{name, panels: [{title, y}]}]}."""
    per_layer: dict[str, list[str]] = {}
    sections = {name: [] for name, _ in SECTIONS}
    for metric in metrics:
        if match := LAYER.match(metric):
            per_layer.setdefault(match["quantity"], []).append(metric)
            continue
        section = next((name for name, prefixes in SECTIONS if metric.startswith(prefixes)), None)
        if section is not None:
            sections[section].append({"title": metric, "y": [metric]})
    layered = [
        {"title": f"{q} by layer", "y": sorted(ys, key=lambda m: int(LAYER.match(m)["layer"]))}
        for q, ys in sorted(per_layer.items())
    ]
    out = [{"name": name, "panels": panels} for name, panels in sections.items() if panels]
    out.append({"name": "Per layer", "panels": layered})
    out.append({"name": "Evaluation (eval.py run --wandb)", "media": [f"eval/{f}" for f in EVAL_FIGURES]})
    return {"name": f"vscale {experiment}", "experiment": experiment, "group_by": GROUP_BY, "sections": out}


def logged_metrics(experiment_dir: Path) -> list[str]:
    """Every metric any run of the experiment logged (the columns of its metrics.csv files)."""
    runs = sorted(p.parent for p in experiment_dir.glob("*/metrics.csv"))
    if not runs:
        raise MissingInput(
            f"--runs_dir {experiment_dir}: no run directory with a metrics.csv there; give the experiment's directory "
            "(run.root/run.experiment) after its runs logged a step."
        )
    return sorted({name for run in runs for name in read_metrics(run)})


def workspace(spec: dict, entity: str, project: str) -> ws.Workspace:
    """The wandb-workspaces object of a spec: its runs filtered to the experiment (the wandb group) and grouped by
    arm."""
    sections = []
    for section in spec["sections"]:
        if "media" in section:
            panels = [wr.MediaBrowser(title="eval figures", media_keys=section["media"])]
        else:
            panels = [
                wr.LinePlot(title=p["title"], x="trainer/global_step", y=p["y"], groupby=spec["group_by"])
                for p in section["panels"]
            ]
        sections.append(ws.Section(name=section["name"], panels=panels, is_open=section["name"] != "Per layer"))
    runset = ws.RunsetSettings(
        filters=ws.And(ws.Metric("Group") == spec["experiment"]), groupby=[ws.Config(spec["group_by"])]
    )
    return ws.Workspace(entity=entity, project=project, name=spec["name"], sections=sections, runset_settings=runset)


def main(argv: list[str] | None = None) -> None:
    p = OneLineParser(
        prog="python -m vscale.dashboard", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--experiment", help="the study's run.experiment (its wandb group)")
    p.add_argument("--runs_dir", type=Path, help="its directory (default: runs/<experiment>)")
    p.add_argument("--spec", type=Path, help="create the workspace of a spec written earlier instead")
    p.add_argument("--entity", help="wandb entity")
    p.add_argument("--project", default="vscale", help="wandb project (default vscale)")
    args = p.parse_args(argv)
    if (args.experiment is None) == (args.spec is None):
        p.error("give --experiment (a study's run.experiment) or --spec (a dashboard.json written offline)")
    with one_line_errors():
        built = (
            json.loads(args.spec.read_text())
            if args.spec
            else spec(args.experiment, logged_metrics(args.runs_dir or Path("runs") / args.experiment))
        )
        if wandb_offline() or not args.entity:
            path = args.spec or (args.runs_dir or Path("runs") / args.experiment) / "dashboard.json"
            path.write_text(json.dumps(built, indent=1))
            print(
                f"wrote {path} (no wandb network or --entity here); create the workspace where wandb is reachable "
                f"with: python -m vscale.dashboard --spec {path} --entity <entity> --project {args.project}"
            )
            return
        saved = workspace(built, args.entity, args.project).save()
        print(saved.url, file=sys.stdout)
