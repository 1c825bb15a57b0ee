"""`eval.py run --wandb`: the report's summary table and figures logged as one wandb run."""

import wandb

from vscale.eval.report import PROFILE_COLUMNS, get
from vscale.runs import wandb_offline


def log_to_wandb(results: dict, out_dir, project: str, group: str | None) -> str:
    """The report's tables and figures as one wandb run (job_type eval); returns its directory."""
    run = wandb.init(
        project=project,
        group=group,
        job_type="eval",
        dir=str(out_dir),
        config=results["eval"],
        mode="offline" if wandb_offline() else "online",
    )
    rows = []
    for label, c in results["checkpoints"].items():
        r = c["results"]
        rows.append(
            [
                label,
                c["vscale"],
                get(r, "perplexity", "ppl", default=None),
                *(get(r, "w8a8", f"w8a8_{m}", "ppl", default=None) for m in results["eval"]["quant"]),
                *(get(r, "profile", name, default=None) for name, _, _ in PROFILE_COLUMNS),
            ]
        )
    columns = [
        "checkpoint",
        "vscale",
        "ppl",
        *(f"w8a8_{m}" for m in results["eval"]["quant"]),
        *(n for n, _, _ in PROFILE_COLUMNS),
    ]
    run.log(
        {
            "eval/summary": wandb.Table(columns=columns, data=rows),
            **{f"eval/{name.removesuffix('.png')}": wandb.Image(str(out_dir / name)) for name in results["figures"]},
        }
    )
    run.finish()
    return run.dir
