"""`train.py`: LightningCLI over VScaleLM and PackedTextData, with the run layout of `vscale.runs`.

A run directory holds config.yaml, metrics.csv, checkpoints/ (last.ckpt and periodic ones) and,
when enabled, wandb/. Resume with `--ckpt_path last`. Every run gets, besides the configured
callbacks, periodic checkpoints written atomically, a Preemption callback (stop cleanly on
SIGUSR1/SIGTERM, requeue on Slurm) and a metrics.csv flushed whenever a checkpoint is due, so a
crash loses at most the steps since the last checkpoint. A run directory that already holds
checkpoints is continued with `--ckpt_path last` and never trained over from scratch.
"""

import sys
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelSummary, ProgressBar, ThroughputMonitor
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities import rank_zero_info

from vscale.console import check_config_files, quiet
from vscale.data import PackedTextData
from vscale.errors import ConfigError
from vscale.model import check_model
from vscale.model.fsdp import keep_vscale_float32
from vscale.runs import RunConfig, RunId
from vscale.runs.steps import accumulation, val_check_interval
from vscale.train import cpu
from vscale.train.callbacks import Diagnostics, Preemption, RunCheckpoint, RunModelSummary, StepProgressBar, Throughput
from vscale.train.checkpoint import AtomicCheckpointIO
from vscale.train.config import check_run_dir
from vscale.train.loggers import close, run_loggers
from vscale.train.module import VScaleLM


class VScaleCLI(LightningCLI):
    run_id: RunId
    """The run's identity, computed from its config before the model and trainer are built."""

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
            # VScaleLM builds the paper's AdamW and schedule itself: no --optimizer/--lr_scheduler
            auto_configure_optimizers=False,
            parser_kwargs={"default_env": False, "exit_on_error": False},  # refusals end in one line (train.py)
        )

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """`fit` alone: train.py trains and eval.py evaluates (VScaleLM has no test or predict step); building the
        parsers of Lightning's other three subcommands took most of a run's start-up."""
        return {"fit": LightningCLI.subcommands()["fit"]}

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
        """Before anything computes: the CPU kernels of `run.cpu_capability` (`vscale.train.cpu`), and the run's
        identity, which names its directory, its wandb run and its arm."""
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        cpu.pin(cfg["run"]["cpu_capability"], may_restart=self._command_line)
        self.run_id = RunConfig(**cfg["run"].as_dict()).identity(
            cfg["model"]["vscale"], cfg["seed_everything"], cfg["model"]["attention"]
        )

    def _config(self):
        """The instantiated config of this command (`fit`), or the whole one without a subcommand (run=False)."""
        return self.config_init[self.subcommand] if self.subcommand else self.config_init

    def instantiate_trainer(self, **kwargs):
        cfg = self._config()
        run_dir = self.run_id.dir
        cfg["ckpt_path"] = check_run_dir(run_dir, cfg.get("ckpt_path"))
        trainer = super().instantiate_trainer(
            logger=run_loggers(cfg["run"], self.run_id),
            callbacks=run_callbacks(cfg["run"], run_dir, cfg["trainer"]),
            plugins=run_plugins(cfg["trainer"]),
            default_root_dir=str(run_dir),
            enable_model_summary=False,  # the summary is RunModelSummary's; Lightning would only say it adds none
            **kwargs,
        )
        if isinstance(trainer.strategy, FSDPStrategy):
            trainer.strategy.mixed_precision = keep_vscale_float32(trainer.strategy.mixed_precision_config)
        self._set_steps(trainer)
        return trainer

    def _set_steps(self, trainer) -> None:
        """The accumulation `data.global_batch` asks for and the validation interval `run.val_every_n_steps` asks for,
        in micro-batches, once the trainer knows its device count."""
        cfg, data = self._config(), self.datamodule.hparams
        trainer.accumulate_grad_batches = accumulation(
            data.global_batch, data.batch_size, trainer.world_size, trainer.accumulate_grad_batches
        )
        trainer.val_check_interval = val_check_interval(
            cfg["run"].val_every_n_steps, trainer.accumulate_grad_batches, cfg["trainer"].get("val_check_interval")
        )

    def before_fit(self) -> None:
        data, trainer = self.datamodule.hparams, self.trainer
        check_model(
            self.model.model.config, tokenizer=self.datamodule.tokenizer, lengths={"data.seq_len": data.seq_len}
        )
        if self.datamodule.task is not None:
            self.datamodule.task.check_fits(self.model.model.config.vocab_size)
        cfg = self._config()
        if cfg.get("weights_only") is None:  # our checkpoints hold tensors and plain values only
            cfg["weights_only"] = True
        rows = data.batch_size * trainer.accumulate_grad_batches * trainer.world_size
        rank_zero_info(
            f"global batch: {rows} rows ({rows * data.seq_len} tokens) per optimizer step = data.batch_size "
            f"{data.batch_size} x accumulate_grad_batches {trainer.accumulate_grad_batches} x {trainer.world_size} "
            "device(s)"
        )
        for logger in trainer.loggers:
            logger.log_hyperparams(
                {
                    "effective_global_batch": rows,
                    "effective_accumulate_grad_batches": trainer.accumulate_grad_batches,
                    "world_size": trainer.world_size,
                    **self._arm(),
                    **cpu.description(),
                }
            )

    def _arm(self) -> dict:
        """The config fields that define an arm, top-level (wandb groups and dashboards group runs by them)."""
        size = sum(p.numel() for p in self.model.model.parameters())
        return {"experiment": self.run_id.experiment, "arm": self.run_id.arm, "model_size": size}

    def after_fit(self) -> None:
        close(self.trainer.loggers)


def run_callbacks(run: RunConfig, run_dir: Path, trainer: dict) -> list[Callback]:
    """Every run's callbacks (periodic checkpoints, the learning rate, preemption, throughput, the step progress bar and
    model summary unless turned off), each left out where `trainer.callbacks` configures its kind, then those."""
    configured = trainer.get("callbacks") or []
    if any(isinstance(c, Diagnostics) for c in configured):
        raise ConfigError(
            "trainer.callbacks lists vscale.train.callbacks.Diagnostics: configure it under diagnostics: "
            "(every_n_steps, profile_figure; every run has it) and remove it from trainer.callbacks."
        )
    has = lambda kind: any(isinstance(c, kind) for c in configured)
    wants_bar = trainer.get("enable_progress_bar") is not False and not has(ProgressBar)
    wants_summary = trainer.get("enable_model_summary") is not False and not has(ModelSummary)
    return [
        RunCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="step{step:07d}",
            auto_insert_metric_name=False,
            every_n_train_steps=run.ckpt_every,
            save_top_k=-1,
        ),
        LearningRateMonitor(logging_interval="step"),
        *([] if has(Preemption) else [Preemption()]),
        *([] if has(ThroughputMonitor) else [Throughput()]),
        *([StepProgressBar()] if wants_bar else []),
        *([RunModelSummary()] if wants_summary else []),
        *configured,
    ]


def run_plugins(trainer: dict) -> list:
    """The configured plugins, atomic checkpoint writes, and on Slurm its environment without Lightning's auto-requeue
    (Preemption handles the signals)."""
    plugins = [*(trainer.get("plugins") or []), AtomicCheckpointIO()]
    if SLURMEnvironment.detect():
        plugins.append(SLURMEnvironment(auto_requeue=False))
    return plugins


def main(args=None) -> VScaleCLI:
    return VScaleCLI(args=args)
