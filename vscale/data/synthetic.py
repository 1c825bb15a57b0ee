"""Synthetic rows: the Bigram-Backcopy task (Guo et al. 2024, arXiv 2410.13835), on which
attention sinks, the gradient sink and a value drain at token 0 emerge within a few hundred CPU
steps (docs/bb.md).

A row is `<bos>`, then tokens drawn from a fixed bigram transition matrix, except that the token
after a trigger copies the token before the trigger. The copy needs attention (a previous-token
head, then a head that looks back from the trigger); at every other position those heads have
nothing to do and park their attention on `<bos>`, the sink. Row i of a stream is a pure function
of (task, seq_len, stream seed, i), so a resumed run regenerates exactly the rows it would have
seen, at no cost, and no file is needed.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from vscale.errors import ConfigError

TRAIN_STREAM, VAL_STREAM = 0, 1
TASK_LOSSES = ("loss_copy", "loss_bigram", "loss_bigram_oracle")
"""The loss breakdown `BigramBackcopy.token_losses` gives, logged as train/<name> and val/<name>."""


@dataclass(frozen=True)
class BigramBackcopy:
    """The Bigram-Backcopy task: which ids are triggers and `<bos>`, and the transition matrix.

    Args:
        vocab_size: Token ids 0..vocab_size-1: the triggers are ids 0..triggers-1, `<bos>` is the last id. The
            model's vocab_size must be at least this.
        triggers: How many ids are triggers (after a trigger, the next token copies the token before it).
        bos: Start every row with `<bos>`. Without it, position 0 holds an ordinary token drawn from `<bos>`'s
            transition row (and, in Guo et al., no sink forms).
        trigger_rate: Probability that a bigram draw gives a trigger, i.e. roughly the fraction of copy targets (the
            most frequent characters of text, the triggers of Guo et al., are about this common). Rare triggers leave
            the copy head too weak to need a sink.
        concentration: Dirichlet concentration of each transition row; smaller makes the bigrams more peaked
            (lower oracle loss).
        task_seed: Seed of the transition matrix, i.e. of the task itself; the row streams are seeded by data.seed.
    """

    vocab_size: int = 64
    triggers: int = 3
    bos: bool = True
    trigger_rate: float = 0.3
    concentration: float = 0.5
    task_seed: int = 0

    def check(self) -> None:
        """Refuse a task that cannot be built, naming the field."""
        if self.triggers < 1:
            raise ConfigError(
                f"data.synthetic.triggers={self.triggers} must be at least 1 (no trigger, nothing to copy)."
            )
        if self.vocab_size < self.triggers + 3:
            raise ConfigError(
                f"data.synthetic.vocab_size={self.vocab_size} leaves fewer than 2 ordinary tokens beside "
                f"{self.triggers} trigger(s) and <bos>: raise it to at least {self.triggers + 3}."
            )
        if not 0 < self.trigger_rate < 1:
            raise ConfigError(f"data.synthetic.trigger_rate={self.trigger_rate} must lie strictly between 0 and 1.")
        if not self.concentration > 0:
            raise ConfigError(
                f"data.synthetic.concentration={self.concentration} must be positive (a Dirichlet concentration)."
            )

    def check_fits(self, model_vocab_size: int) -> None:
        """The model has an output for every id of the task."""
        if model_vocab_size < self.vocab_size:
            raise ConfigError(
                f"data.synthetic.vocab_size={self.vocab_size} exceeds the model's vocab_size={model_vocab_size}: set "
                f"model.model_config.vocab_size >= {self.vocab_size}, or lower data.synthetic.vocab_size."
            )

    @property
    def bos_id(self) -> int:
        return self.vocab_size - 1

    @property
    def trigger_ids(self) -> torch.Tensor:
        return torch.arange(self.triggers)

    @cached_property
    def transitions(self) -> torch.Tensor:
        """(vocab_size, vocab_size) float64 P[next | previous]. A row of an ordinary token is a trigger with
        probability trigger_rate and an ordinary token otherwise, each part spread by a Dirichlet draw; `<bos>`'s
        row has no trigger (there is nothing before `<bos>` to copy); a trigger's row is never used (a copy
        follows it) and is left uniform; nothing leads to `<bos>`."""
        rng = np.random.default_rng(self.task_seed)
        V, k = self.vocab_size, self.triggers
        p = np.zeros((V, V))
        p[:, :k] = self.trigger_rate * rng.dirichlet(np.full(k, self.concentration), size=V)
        p[:, k : V - 1] = (1 - self.trigger_rate) * rng.dirichlet(np.full(V - 1 - k, self.concentration), size=V)
        p[self.bos_id, :k] = 0.0
        p[:k, : V - 1] = 1.0
        return torch.from_numpy(p / p.sum(1, keepdims=True))

    @cached_property
    def _cdf(self) -> np.ndarray:
        cdf = self.transitions[:, :-1].numpy().cumsum(1)
        cdf[:, -1] = 1.0  # round-off: every draw u < 1 lands on an id
        return cdf

    def row(self, seq_len: int, seed: int, stream: int, index: int) -> torch.Tensor:
        """Row `index` of stream `stream` under data seed `seed`: a function of these and the task only."""
        return self.rows(seq_len, seed, stream, [index])[0]

    def rows(self, seq_len: int, seed: int, stream: int, indices: list[int]) -> torch.Tensor:
        """(len(indices), seq_len) rows `indices` of a stream, each as `row` gives it: one draw of uniforms per row from
        its own generator, then every row advanced a position at a time together (a GPU step's 512 rows of 256 tokens
        take milliseconds, not the seconds of a token-at-a-time loop)."""
        u = np.stack([np.random.default_rng([seed, stream, i]).random(seq_len) for i in indices])
        ids = np.empty((len(indices), seq_len), dtype=np.int64)
        start = 1 if self.bos else 0
        ids[:, 0] = self.bos_id
        prev = np.full(len(indices), self.bos_id)
        for t in range(start, seq_len):
            drawn = (self._cdf[prev] <= u[:, t, None]).sum(1)  # np.searchsorted(cdf[prev], u, side="right"), row by row
            ids[:, t] = np.where(prev < self.triggers, ids[:, t - 2], drawn) if t >= 2 else drawn
            prev = ids[:, t]
        return torch.from_numpy(ids)

    def copy_targets(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T-1) bool: next-token targets t+1 that copy (the token at t is a trigger); the rest are bigram
        targets."""
        return input_ids[:, :-1] < self.triggers

    def oracle_losses(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T-1) -log P[x_{t+1} | x_t] of the generating process: 0 at copy targets, the bigram's at the others."""
        p = self.transitions.to(input_ids.device)[input_ids[:, :-1], input_ids[:, 1:]]
        return torch.where(self.copy_targets(input_ids), 0.0, -p.log()).float()

    def token_losses(self, input_ids: torch.Tensor, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """The per-target losses this task is read by, each a 1-D float32 tensor: the model's next-token
        cross-entropy at copy targets (`loss_copy`) and at bigram targets (`loss_bigram`), and the generating
        process's own at bigram targets (`loss_bigram_oracle`, the floor `loss_bigram` can reach)."""
        ce = torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(), input_ids[:, 1:].flatten(), reduction="none"
        )
        copy = self.copy_targets(input_ids).flatten()
        return {
            "loss_copy": ce[copy],
            "loss_bigram": ce[~copy],
            "loss_bigram_oracle": self.oracle_losses(input_ids).flatten()[~copy],
        }


class SyntheticRows(Dataset):
    """Rows of one stream, generated on demand: item i is `task.row(seq_len, seed, stream, i)`.
    `length` None is an endless stream (read through `StreamPositions`)."""

    def __init__(self, task: BigramBackcopy, seq_len: int, seed: int, stream: int, length: int | None = None):
        self.task, self.seq_len, self.seed, self.stream, self.length = task, seq_len, seed, stream, length

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("an endless synthetic stream has no length")
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        """A batch's rows generated together (the DataLoader's fetcher asks for a batch at once when this exists)."""
        if self.length is not None and not all(0 <= i < self.length for i in indices):
            raise IndexError(indices)
        return list(self.task.rows(self.seq_len, self.seed, self.stream, indices))


class StreamPositions(Sampler[int]):
    """Endless sample positions start+rank, start+rank+world, ...: one optimizer step of all ranks
    covers one contiguous block of the stream, and a resume starts at its step's position."""

    def __init__(self, start: int = 0, rank: int = 0, world: int = 1):
        self.start, self.rank, self.world = start, rank, world

    def __iter__(self) -> Iterator[int]:
        p = self.start + self.rank
        while True:
            yield p
            p += self.world
