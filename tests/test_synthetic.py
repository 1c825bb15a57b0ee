"""The Bigram-Backcopy task (vscale.data.synthetic): rows that are a pure function of (seed, position),
the task's rules and statistics checked by independent counting, its loss breakdown against a hand
computation, and the data module and CLI that serve it, resume included."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import metrics, train

from vscale.data import BigramBackcopy, PackedTextData
from vscale.data.synthetic import TRAIN_STREAM, VAL_STREAM, StreamPositions, SyntheticRows

TASK = BigramBackcopy()
SHORT = ["--trainer.max_steps=20", "--run.val_every_n_steps=10", "--run.ckpt_every=10"]
with open("configs/bb.yaml") as f:
    BB = yaml.safe_load(f)
RUN = f"bb/off-seed{BB['seed_everything']}"
"""The run directory of configs/bb.yaml under --run.root."""


def rows(
    n: int, seed: int = 0, stream: int = TRAIN_STREAM, task: BigramBackcopy = TASK, seq_len: int = 64
) -> torch.Tensor:
    return torch.stack([task.row(seq_len, seed, stream, i) for i in range(n)])


def test_a_row_is_a_function_of_seed_stream_and_position_only():
    forward = rows(6)
    backward = torch.stack([SyntheticRows(BigramBackcopy(), 64, 0, TRAIN_STREAM)[i] for i in reversed(range(6))]).flip(
        0
    )
    assert torch.equal(forward, backward), "the same row whatever was generated before, by whichever object"
    assert len({tuple(r.tolist()) for r in forward}) == 6
    assert not torch.equal(forward, rows(6, seed=1))
    assert not torch.equal(forward, rows(6, stream=VAL_STREAM))


spec = importlib.util.spec_from_file_location(
    "synthetic_rows", Path(__file__).resolve().parents[1] / "benchmarks" / "synthetic_rows.py"
)
synthetic_rows = importlib.util.module_from_spec(spec)
spec.loader.exec_module(synthetic_rows)
token_at_a_time = synthetic_rows.token_at_a_time
"""The task's definition read literally, one token at a time (benchmarks/synthetic_rows.py times it against the
batch)."""


@pytest.mark.parametrize("task", [TASK, BigramBackcopy(bos=False, triggers=1, trigger_rate=0.5)], ids=["bos", "no-bos"])
def test_a_batch_generated_together_equals_its_rows_generated_one_token_at_a_time(task):
    indices = [0, 7, 3, 1000, 12]
    together = SyntheticRows(task, 64, 3, TRAIN_STREAM).__getitems__(indices)
    assert [r.tolist() for r in together] == [token_at_a_time(task, 64, 3, TRAIN_STREAM, i) for i in indices]


def test_rows_start_with_bos_and_every_token_after_a_trigger_copies_the_token_before_it():
    ids = rows(200)
    assert (ids[:, 0] == TASK.bos_id).all() and (ids[:, 1:] != TASK.bos_id).all()
    assert (ids[:, 1] >= TASK.triggers).all(), "nothing before <bos> to copy: <bos> is never followed by a trigger"
    copies = 0
    for row in ids.tolist():
        for t in range(2, len(row)):
            if row[t - 1] < TASK.triggers:
                assert row[t] == row[t - 2]
                copies += 1
    assert copies == int(TASK.copy_targets(ids).sum())


def test_without_bos_position_zero_is_an_ordinary_token():
    task = BigramBackcopy(bos=False)
    ids = rows(50, task=task)
    assert (ids != task.bos_id).all() and (ids[:, 0] >= task.triggers).all()


def test_bigram_draws_follow_the_transition_matrix_and_the_trigger_rate():
    """Transitions counted in 2000 rows against P[next | previous]: every count of a frequently seen
    previous token within 5 binomial standard deviations of its expectation (plus 2, for the
    rare pairs a single draw decides), and triggers drawn at trigger_rate."""
    ids = rows(2000)
    prev, nxt = ids[:, :-1].flatten(), ids[:, 1:].flatten()
    bigram = prev >= TASK.triggers  # positions drawn from the matrix (a copy follows each trigger)
    counts = torch.zeros(TASK.vocab_size, TASK.vocab_size, dtype=torch.float64)
    counts.index_put_((prev[bigram], nxt[bigram]), torch.ones(int(bigram.sum()), dtype=torch.float64), accumulate=True)
    seen = counts.sum(1, keepdim=True)
    P = TASK.transitions
    busy = seen.squeeze(1) >= 1000
    assert busy.sum() >= 20
    expected = seen * P
    assert ((counts - expected).abs() <= 5 * (expected * (1 - P)).sqrt() + 2)[busy].all()
    ordinary = bigram & (prev != TASK.bos_id)
    assert (nxt[ordinary] < TASK.triggers).double().mean().item() == pytest.approx(TASK.trigger_rate, abs=0.01)


def test_the_loss_breakdown_matches_a_hand_computation():
    torch.manual_seed(0)
    ids = rows(3, seq_len=40)
    logits = torch.randn(3, 40, TASK.vocab_size)
    losses = TASK.token_losses(ids, logits)
    copy, bigram, oracle = [], [], []
    for b in range(3):
        for t in range(39):
            z = logits[b, t].double()
            ce = (z.exp().sum().log() - z[ids[b, t + 1]]).item()
            if ids[b, t] < TASK.triggers:
                copy.append(ce)
            else:
                bigram.append(ce)
                oracle.append(-math.log(TASK.transitions[ids[b, t], ids[b, t + 1]].item()))
    assert losses["loss_copy"].tolist() == pytest.approx(copy, rel=1e-5)
    assert losses["loss_bigram"].tolist() == pytest.approx(bigram, rel=1e-5)
    assert losses["loss_bigram_oracle"].tolist() == pytest.approx(oracle, rel=1e-6)


def test_stream_positions_interleave_ranks_from_the_start_position():
    def take(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    assert take(StreamPositions(10, 0, 2), 3) == [10, 12, 14] and take(StreamPositions(10, 1, 2), 3) == [11, 13, 15]


def test_the_data_module_serves_training_rows_by_position_and_validation_rows_of_the_task_alone():
    data = PackedTextData(seq_len=64, batch_size=4, val_rows=8, synthetic=BigramBackcopy(), seed=3)
    data.setup("fit")
    first = next(iter(data.train_dataloader()))
    assert torch.equal(first, rows(4, seed=3))
    val = torch.cat(list(data.val_dataloader()))
    assert torch.equal(val, rows(8, seed=TASK.task_seed, stream=VAL_STREAM))
    other = PackedTextData(seq_len=64, batch_size=4, val_rows=8, synthetic=BigramBackcopy(), seed=4)
    other.setup("fit")
    assert torch.equal(torch.cat(list(other.val_dataloader())), val), (
        "every seed of a study is validated on the same rows"
    )
    assert dict(data.hparams)["synthetic"] == {
        "vocab_size": 64,
        "triggers": 3,
        "bos": True,
        "trigger_rate": 0.3,
        "concentration": 0.5,
        "task_seed": 0,
    }
    assert PackedTextData(seq_len=64, val_rows=8, synthetic=dict(data.hparams)["synthetic"]).task == TASK, (
        "saved hparams rebuild the task"
    )


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(tokenizer="assets/tokenizer-tiny"), "remove data.tokenizer"),
        (dict(train_files=["data/tiny/train.jsonl"]), "remove data.train_files"),
        (dict(val_rows=None), "data.val_rows=None"),
        (dict(synthetic=BigramBackcopy(triggers=0)), "data.synthetic.triggers=0"),
        (dict(synthetic=BigramBackcopy(vocab_size=4)), "data.synthetic.vocab_size=4"),
        (dict(synthetic=BigramBackcopy(trigger_rate=1.0)), "data.synthetic.trigger_rate=1.0"),
        (dict(synthetic=BigramBackcopy(concentration=0)), "data.synthetic.concentration=0"),
    ],
    ids=["tokenizer", "files", "val_rows", "triggers", "vocab", "rate", "concentration"],
)
def test_a_bad_synthetic_config_is_refused_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("[", r"\[")):
        PackedTextData(**{"seq_len": 64, "val_rows": 8, "synthetic": BigramBackcopy(), **fields})


def test_a_model_vocabulary_smaller_than_the_task_is_refused_before_training(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"data\.synthetic\.vocab_size=64 exceeds the model's "
        r"vocab_size=32.*model\.model_config\.vocab_size >= 64",
    ):
        train(tmp_path, "--model.model_config.vocab_size=32", *SHORT, config="configs/bb.yaml")
    assert not (tmp_path / RUN / "checkpoints").exists()


def test_training_logs_the_loss_breakdown_and_validation_loss_is_its_token_weighted_mean(tmp_path):
    """val/loss (every target weighs the same) equals the copy and bigram losses weighted by their
    target counts, counted on the regenerated validation rows; the oracle's loss is recomputed
    from the transition matrix on those rows."""
    train(tmp_path, *SHORT, "--data.val_rows=64", config="configs/bb.yaml")
    run = tmp_path / RUN
    for name in ("train/loss_copy", "train/loss_bigram", "train/loss_bigram_oracle"):
        assert set(metrics(run, name)) == set(metrics(run, "train/loss"))
    task = BigramBackcopy(**BB["data"]["synthetic"])
    val = rows(64, seed=task.task_seed, stream=VAL_STREAM, task=task, seq_len=BB["data"]["seq_len"])
    drawn = val[:, :-1] >= task.triggers  # bigram targets: the token before is not a trigger
    n_bigram = int(drawn.sum())
    n_copy = val[:, 1:].numel() - n_bigram
    oracle = -task.transitions[val[:, :-1], val[:, 1:]][drawn].log().mean().item()
    for step, loss in metrics(run, "val/loss").items():
        copy, bigram = metrics(run, "val/loss_copy")[step], metrics(run, "val/loss_bigram")[step]
        assert loss == pytest.approx((n_copy * copy + n_bigram * bigram) / (n_copy + n_bigram), rel=1e-5)
        assert metrics(run, "val/loss_bigram_oracle")[step] == pytest.approx(oracle, rel=1e-5)


def test_a_resumed_synthetic_run_continues_exactly(tmp_path):
    """A run of 8 steps extended to 16 equals a straight 16-step run, step for step: the rows after
    the resume are regenerated from their positions. A constant learning rate after warm-up
    (min_lr = lr) makes the schedule independent of max_steps."""
    args = [
        "--trainer.max_steps=16",
        "--run.ckpt_every=8",
        "--trainer.log_every_n_steps=1",
        "--run.val_every_n_steps=8",
        "--trainer.callbacks=[]",
        "--model.lr=1e-2",
        "--model.min_lr=1e-2",
        "--model.warmup_steps=4",
    ]
    train(tmp_path / "straight", *args, config="configs/bb.yaml")
    train(tmp_path / "resumed", *args[1:], "--trainer.max_steps=8", config="configs/bb.yaml")
    train(tmp_path / "resumed", *args, "--ckpt_path=last", config="configs/bb.yaml")
    straight = metrics(tmp_path / "straight" / RUN, "train/loss")
    resumed = metrics(tmp_path / "resumed" / RUN, "train/loss")
    assert sorted(resumed) == list(range(16))
    for step in range(16):
        assert resumed[step] == pytest.approx(straight[step], rel=1e-6, abs=1e-6), step
