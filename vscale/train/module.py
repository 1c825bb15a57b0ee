"""The LightningModule: a Hugging Face causal LM with V-scale, trained with the paper's recipe."""

from fnmatch import fnmatch
from typing import Any

import lightning as L
import torch
from torchmetrics.aggregation import MeanMetric

from vscale.cli_values import Strings, as_list
from vscale.data import split_batch
from vscale.data.synthetic import TASK_LOSSES
from vscale.errors import ConfigError
from vscale.model import build_config, build_model, check_asked
from vscale.model.install import install
from vscale.model.interventions.value_scale import Mode
from vscale.train.checkpoint import rng_state, set_rng_state
from vscale.train.optim import build_optimizer


def freeze_except(model: torch.nn.Module, patterns: list[str]) -> None:
    names = [name for name, _ in model.named_parameters()]
    for name, p in model.named_parameters():
        p.requires_grad_(any(fnmatch(name, pattern) for pattern in patterns))
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(
            f"model.trainable={patterns} matches no parameter; names look like {names[:2]} ... {names[-1:]}, "
            "e.g. use ['*.self_attn.*'] or ['*.vscale.theta']."
        )


def check_arm_trainable(model: torch.nn.Module, attention: str, patterns: list[str]) -> None:
    """A retrofitted arm starts from its paper's initialisation: frozen there, it is not the arm."""
    arm = [p for name, p in model.named_parameters() if ".arm." in name]
    if arm and not any(p.requires_grad for p in arm):
        raise ConfigError(
            f"model.trainable={patterns} leaves model.attention={attention!r} frozen at its initialisation: add "
            f"'*.arm.*' to model.trainable, or use model.attention=softmax."
        )


def check_recipe(lr: float, min_lr: float, warmup_steps: int, weight_decay: float, betas, eps: float) -> None:
    """Each optimizer field in its own range first, then how they relate, so a message blames the field that is
    wrong."""
    for field, value, ok, rule in (
        ("lr", lr, lr > 0, "> 0"),
        ("min_lr", min_lr, min_lr >= 0, ">= 0"),
        ("warmup_steps", warmup_steps, warmup_steps >= 0, ">= 0"),
        ("weight_decay", weight_decay, weight_decay >= 0, ">= 0"),
        ("eps", eps, eps > 0, "> 0"),
        ("betas", list(betas), len(betas) == 2 and all(0 <= b < 1 for b in betas), "two numbers in [0, 1)"),
    ):
        if not ok:
            raise ConfigError(f"model.{field}={value} must be {rule}.")
    if min_lr > lr:
        raise ConfigError(f"model.min_lr={min_lr} must not exceed model.lr={lr}: the cosine decays from lr to min_lr.")


class VScaleLM(L.LightningModule):
    """Causal language model with V-scale on the attention value path.

    Args:
        model_config: Hugging Face config fields for a fresh model, with `model_type` (llama, mistral, qwen2, qwen3).
        pretrained: A `from_pretrained` directory or hub name, instead of `model_config`.
        vscale: V-scale mode: off, fixed, learned or backward (docs/method.md §2).
        vscale_lambda: lambda for fixed/backward; initial lambda (theta = log lambda) for learned.
        attention: Attention arm (vscale.ARMS): softmax (the model's own), or an intervention that
            replaces how attention weights are formed; combines with every V-scale mode.
        attn_implementation: The attention kernel V-scale wraps: sdpa (fused), eager, or another registered one.
        embedding_std: Draw a fresh model's input embeddings from N(0, embedding_std^2) (PyTorch's default is 1, as in
            Guo et al.) instead of the config's initializer_range; None keeps the model's own initialisation.
        compile: torch.compile the model in place (parameter names and checkpoints unchanged); diagnostic steps run it
            eagerly, since their hooks are not part of the compiled graph.
        compile_backend: torch.compile backend: inductor (fused kernels), or aot_eager to check that a model traces.
        activation_checkpointing: Recompute each decoder layer's activations in the backward instead of keeping them
            (non-reentrant checkpointing): about one extra forward of compute for the memory of one layer's activations.
        trainable: Train only the parameters whose names (as in `model.named_parameters()`, e.g.
            `model.layers.0.self_attn.q_proj.weight`) match one of these glob patterns, e.g. ["*.self_attn.*"] or
            ["*.vscale.theta"]; the rest stay frozen. None trains everything.
        lr: Peak learning rate after warm-up.
        min_lr: Learning rate at the end of the cosine decay (at trainer.max_steps).
        warmup_steps: Linear warm-up steps.
        weight_decay: AdamW decay on weight matrices and embeddings (not norms, biases, theta).
        betas: AdamW betas.
        eps: AdamW epsilon.
    """

    def __init__(
        self,
        model_config: dict[str, Any] | None = None,
        pretrained: str | None = None,
        vscale: Mode = "off",
        vscale_lambda: float = 1.0,
        attention: str = "softmax",
        attn_implementation: str = "sdpa",
        embedding_std: float | None = None,
        trainable: Strings | None = None,
        compile: bool = False,
        compile_backend: str = "inductor",
        activation_checkpointing: bool = False,
        lr: float = 5e-4,
        min_lr: float = 5e-5,
        warmup_steps: int = 1000,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
    ):
        super().__init__()
        check_recipe(lr, min_lr, warmup_steps, weight_decay, betas, eps)
        config = build_config(model_config, pretrained)
        check_asked(config, vscale, vscale_lambda, attention, attn_implementation)
        self.save_hyperparameters()
        self.hparams.trainable = trainable = as_list(trainable)  # one pattern: a list of one
        self.model = install(
            build_model(config, pretrained, attn_implementation, embedding_std), vscale, attention, vscale_lambda
        )
        if trainable is not None:
            freeze_except(self.model, trainable)
            check_arm_trainable(self.model, attention, trainable)
        if activation_checkpointing:
            self.model.activation_checkpointing_enable({"use_reentrant": False})
        if compile:
            self.model.compile(backend=compile_backend)
        self.train_loss = MeanMetric()
        self.train_task_losses = torch.nn.ModuleDict({name: MeanMetric() for name in TASK_LOSSES})
        self.val_loss = MeanMetric()
        self.val_task_losses = torch.nn.ModuleDict({name: MeanMetric() for name in TASK_LOSSES})
        self.task = None
        self._resumed_rng: dict | None = None

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False).logits

    def loss(self, batch) -> torch.Tensor:
        """Next-token cross-entropy over the labelled positions: all of a text row, the replies of a chat row."""
        return self.output(batch).loss

    def output(self, batch):
        """The model's output on a batch: `.loss` as in `loss`, and the logits a task's loss breakdown reads."""
        input_ids, labels = split_batch(batch)
        return self.model(input_ids=input_ids, labels=labels, use_cache=False)  # no KV cache: nothing decodes

    def setup(self, stage: str) -> None:
        """The synthetic task the data module generates (`data.synthetic`), whose loss breakdown is logged; None for
        text."""
        self.task = getattr(self.trainer.datamodule, "task", None)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rng_state"] = rng_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._resumed_rng = checkpoint.get("rng_state")

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        """Restore the random state at the first step after a resume, not at load time: the
        sanity check and data loaders draw from it in between, and did not in the original run."""
        if self._resumed_rng is not None:
            set_rng_state(self._resumed_rng)
            self._resumed_rng = None

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        out = self.output(batch)
        self.train_loss.update(out.loss.detach())
        if self.task is not None:  # every target of the step's micro-batches weighs the same
            for name, values in self.task.token_losses(split_batch(batch)[0], out.logits.detach()).items():
                self.train_task_losses[name].update(values)
        if (batch_idx + 1) % self.trainer.accumulate_grad_batches == 0:
            self._log_step_losses()
        return out.loss

    def _log_step_losses(self) -> None:
        """The optimizer step's losses: means over all its micro-batches and ranks (one all-reduce each), not the
        last micro-batch's."""
        self.log("train/loss", self.train_loss.compute(), prog_bar=True)
        self.train_loss.reset()
        if self.task is not None:  # nan for a kind the step has no target of
            self.log_dict({f"train/{name}": metric.compute() for name, metric in self.train_task_losses.items()})
            for metric in self.train_task_losses.values():
                metric.reset()

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        out = self.output(batch)
        self.val_loss.update(out.loss, weight=split_batch(batch)[0].shape[0])
        if self.task is not None:  # every target of the validation rows weighs the same
            for name, values in self.task.token_losses(split_batch(batch)[0], out.logits).items():
                self.val_task_losses[name].update(values)

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()
        self.val_loss.reset()
        self.log_dict({"val/loss": loss, "val/ppl": loss.exp()}, prog_bar=True)
        if self.task is not None:
            self.log_dict({f"val/{name}": metric.compute() for name, metric in self.val_task_losses.items()})
            for metric in self.val_task_losses.values():
                metric.reset()

    def configure_optimizers(self):
        hp, total = self.hparams, self.trainer.max_steps
        if total is None or total <= 0:
            raise ConfigError("trainer.max_steps must be set (> 0): the cosine schedule decays over it.")
        optimizer, schedule = build_optimizer(
            self.model, hp.lr, hp.min_lr, hp.warmup_steps, total, hp.weight_decay, tuple(hp.betas), hp.eps
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
