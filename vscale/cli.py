"""`train.py`: LightningCLI over VScaleLM and PackedTextData, with the run layout of RunConfig.

A run directory holds config.yaml, metrics.csv, checkpoints/ (last.ckpt and periodic ones) and,
when enabled, wandb/. Resume with `--ckpt_path last`. Every run gets, besides the configured
callbacks, periodic checkpoints written atomically, a Preemption callback (stop cleanly on
SIGUSR1/SIGTERM, requeue on Slurm) and a metrics.csv flushed whenever a checkpoint is due, so a
crash loses at most the steps since the last checkpoint.
"""

import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment

from vscale.callbacks import Preemption
from vscale.checkpoint import AtomicCheckpointIO, RunCheckpoint
from vscale.config import RunConfig, check_model_fits_data, wandb_offline, wandb_run_id
from vscale.data import PackedTextData
from vscale.loggers import ResumableCSVLogger
from vscale.module import VScaleLM


class VScaleCLI(LightningCLI):
    def __init__(self, args=None, run: bool = True):
        super().__init__(
            VScaleLM,
            PackedTextData,
            args=args,
            run=run,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"default_env": False},
        )

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_class_arguments(RunConfig, "run")
        parser.link_arguments("seed_everything", "data.seed")
        parser.set_defaults(
            {
                "seed_everything": 0,
                "trainer.precision": "bf16-mixed" if torch.cuda.is_available() else "32-true",
                "trainer.gradient_clip_val": 1.0,
                "trainer.use_distributed_sampler": False,
                "trainer.check_val_every_n_epoch": None,
                "trainer.log_every_n_steps": 10,
            }
        )

    def instantiate_trainer(self, **kwargs):
        cfg = self.config_init[self.subcommand] if self.subcommand else self.config_init
        run: RunConfig = cfg["run"]
        mode, seed = self.model.hparams.vscale, cfg["seed_everything"]
        run_dir = run.run_dir(mode, seed)
        loggers = [ResumableCSVLogger(save_dir=run_dir, name="", version="", flush_logs_every_n_steps=run.ckpt_every)]
        if run.wandb:
            loggers.append(
                WandbLogger(
                    project=run.wandb_project,
                    entity=run.wandb_entity,
                    group=run.experiment,
                    name=f"{run.experiment}/{run.run_name(mode, seed)}",
                    tags=[f"vscale={mode}", f"seed={seed}", *run.wandb_tags],
                    save_dir=str(run_dir),
                    offline=wandb_offline(),
                    id=wandb_run_id(run_dir),
                    resume="allow",
                )
            )
        configured = cfg["trainer"].get("callbacks") or []
        callbacks = [
            RunCheckpoint(
                dirpath=run_dir / "checkpoints",
                filename="step{step:07d}",
                auto_insert_metric_name=False,
                every_n_train_steps=run.ckpt_every,
                save_top_k=-1,
            ),
            LearningRateMonitor(logging_interval="step"),
            *([] if any(isinstance(c, Preemption) for c in configured) else [Preemption()]),
            *configured,
        ]
        plugins = [*(cfg["trainer"].get("plugins") or []), AtomicCheckpointIO()]
        if SLURMEnvironment.detect():  # Preemption handles the signals, not Lightning's auto-requeue
            plugins.append(SLURMEnvironment(auto_requeue=False))
        return super().instantiate_trainer(
            logger=loggers, callbacks=callbacks, plugins=plugins, default_root_dir=str(run_dir), **kwargs
        )

    def before_fit(self) -> None:
        check_model_fits_data(self.model.model, self.datamodule.tokenizer, self.datamodule.hparams.seq_len)


def main(args=None) -> VScaleCLI:
    return VScaleCLI(args=args)
