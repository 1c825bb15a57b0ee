"""`train.py`: LightningCLI over VScaleLM and PackedTextData, with the run layout of RunConfig.

A run directory holds config.yaml, metrics.csv, checkpoints/ (last.ckpt and periodic ones) and,
when enabled, wandb/. Resume with `--ckpt_path last`. Every run gets, besides the configured
callbacks, periodic checkpoints written atomically, a Preemption callback (stop cleanly on
SIGUSR1/SIGTERM, requeue on Slurm) and a metrics.csv flushed whenever a checkpoint is due, so a
crash loses at most the steps since the last checkpoint. A run directory that already holds
checkpoints is continued with `--ckpt_path last` and never trained over from scratch.
"""

import re
import sys

import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelSummary, ProgressBar, ThroughputMonitor
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities import rank_zero_info

from vscale.console import check_config_files, quiet
from vscale.data import PackedTextData
from vscale.errors import ConfigError
from vscale.model import check_model
from vscale.model.fsdp import keep_vscale_float32
from vscale.train import cpu
from vscale.train.callbacks import Diagnostics, Preemption, RunCheckpoint, RunModelSummary, StepProgressBar, Throughput
from vscale.train.checkpoint import AtomicCheckpointIO
from vscale.train.config import RunConfig, accumulation, check_run_dir, val_check_interval, wandb_offline, wandb_run_id
from vscale.train.loggers import ResumableCSVLogger, close
from vscale.train.module import VScaleLM


class VScaleCLI(LightningCLI):
    def __init__(self, args=None, run: bool = True):
        quiet()
        check_config_files(sys.argv[1:] if args is None else args)
        self._command_line = args is None  # a command-line run may restart itself to pin its CPU kernels
        super().__init__(
            VScaleLM,
            PackedTextData,
            args=args,
            run=run,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,  # VScaleLM builds the paper's AdamW and schedule itself: no --optimizer/--lr_scheduler
            parser_kwargs={"default_env": False, "exit_on_error": False},  # refusals end in one line (train.py)
        )

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_class_arguments(RunConfig, "run")
        parser.add_lightning_class_args(Diagnostics, "diagnostics")  # --diagnostics.every_n_steps 0 turns them off
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

    def before_instantiate_classes(self) -> None:
        """Before anything computes: the CPU kernels of `run.cpu_capability` (`vscale.train.cpu`)."""
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        cpu.pin(cfg["run"]["cpu_capability"], may_restart=self._command_line)

    def _config(self):
        """The instantiated config of this command (`fit`), or the whole one without a subcommand (run=False)."""
        return self.config_init[self.subcommand] if self.subcommand else self.config_init

    def instantiate_trainer(self, **kwargs):
        cfg = self._config()
        run: RunConfig = cfg["run"]
        mode, seed, attention = self.model.hparams.vscale, cfg["seed_everything"], self.model.hparams.attention
        run_dir = run.run_dir(mode, seed, attention)
        cfg["ckpt_path"] = check_run_dir(run_dir, cfg.get("ckpt_path"))
        loggers = [ResumableCSVLogger(save_dir=run_dir, name="", version="")]
        if run.wandb:
            loggers.append(
                WandbLogger(
                    project=run.wandb_project,
                    entity=run.wandb_entity,
                    group=run.experiment,
                    name=f"{run.experiment}/{run.run_name(mode, seed, attention)}",
                    tags=[f"vscale={mode}", f"attention={attention}", f"seed={seed}", *run.wandb_tags],
                    save_dir=str(run_dir),
                    offline=wandb_offline(),
                    id=wandb_run_id(run_dir),
                    resume="allow",
                )
            )
            loggers[-1]._wandb_init.pop("anonymous")  # Lightning always passes it; wandb warns that it has no effect
        configured = cfg["trainer"].get("callbacks") or []
        if any(isinstance(c, Diagnostics) for c in configured):
            raise ConfigError("trainer.callbacks lists vscale.train.callbacks.Diagnostics: configure it under diagnostics: "
                              "(every_n_steps, profile_figure; every run has it) and remove it from trainer.callbacks.")
        wants_bar = cfg["trainer"].get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in configured)
        wants_summary = cfg["trainer"].get("enable_model_summary") is not False and not any(isinstance(c, ModelSummary) for c in configured)
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
            *([] if any(isinstance(c, ThroughputMonitor) for c in configured) else [Throughput()]),
            *([StepProgressBar()] if wants_bar else []),
            *([RunModelSummary()] if wants_summary else []),
            *configured,
        ]
        plugins = [*(cfg["trainer"].get("plugins") or []), AtomicCheckpointIO()]
        if SLURMEnvironment.detect():  # Preemption handles the signals, not Lightning's auto-requeue
            plugins.append(SLURMEnvironment(auto_requeue=False))
        trainer = super().instantiate_trainer(
            logger=loggers, callbacks=callbacks, plugins=plugins, default_root_dir=str(run_dir),
            enable_model_summary=False,  # the summary is RunModelSummary's; Lightning would only say it adds none
            **kwargs,
        )
        if isinstance(trainer.strategy, FSDPStrategy):
            trainer.strategy.mixed_precision = keep_vscale_float32(trainer.strategy.mixed_precision_config)
        data = self.datamodule.hparams
        trainer.accumulate_grad_batches = accumulation(data.global_batch, data.batch_size, trainer.world_size, trainer.accumulate_grad_batches)
        trainer.val_check_interval = val_check_interval(run.val_every_n_steps, trainer.accumulate_grad_batches, cfg["trainer"].get("val_check_interval"))
        return trainer

    def before_fit(self) -> None:
        data, trainer = self.datamodule.hparams, self.trainer
        check_model(self.model.model.config, tokenizer=self.datamodule.tokenizer, lengths={"data.seq_len": data.seq_len})
        if self.datamodule.task is not None:
            self.datamodule.task.check_fits(self.model.model.config.vocab_size)
        cfg = self._config()
        if cfg.get("weights_only") is None:  # our checkpoints hold tensors and plain values only
            cfg["weights_only"] = True
        rows = data.batch_size * trainer.accumulate_grad_batches * trainer.world_size
        rank_zero_info(
            f"global batch: {rows} rows ({rows * data.seq_len} tokens) per optimizer step = data.batch_size {data.batch_size}"
            f" x accumulate_grad_batches {trainer.accumulate_grad_batches} x {trainer.world_size} device(s)"
        )
        for logger in trainer.loggers:
            logger.log_hyperparams({"effective_global_batch": rows, "effective_accumulate_grad_batches": trainer.accumulate_grad_batches,
                                    "world_size": trainer.world_size, **self._arm(), **cpu.description()})


    def _arm(self) -> dict:
        """The config fields that define an arm, top-level (wandb groups and dashboards group runs by them)."""
        run, hp = self._config()["run"], self.model.hparams
        name = run.run_name(hp.vscale, self._config()["seed_everything"], hp.attention)
        size = sum(p.numel() for p in self.model.model.parameters())
        return {"experiment": run.experiment, "arm": re.sub(r"-seed\d+$", "", name), "model_size": size}

    def after_fit(self) -> None:
        close(self.trainer.loggers)


def main(args=None) -> VScaleCLI:
    return VScaleCLI(args=args)
