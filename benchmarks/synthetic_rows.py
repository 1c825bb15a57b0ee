"""Bigram-Backcopy rows generated a batch at a time (`BigramBackcopy.rows`, what the DataLoader asks for) against
one token at a time (the task's definition, as rows were made before), both in this one process:

    python benchmarks/synthetic_rows.py --rows 512 --seq_len 256
"""

import argparse
import time

import numpy as np

from vscale.data.synthetic import BigramBackcopy


def token_at_a_time(task: BigramBackcopy, seq_len: int, seed: int, stream: int, index: int) -> list[int]:
    """The task's definition read literally: each token drawn from its predecessor's transition row by inverse CDF
    (np.searchsorted), or copied after a trigger. Rows generated before the batched generator were made this way."""
    u = np.random.default_rng([seed, stream, index]).random(seq_len)
    cdf = task.transitions[:, :-1].numpy().cumsum(1)
    cdf[:, -1] = 1.0
    ids, prev = ([task.bos_id] if task.bos else []), task.bos_id
    for t in range(len(ids), seq_len):
        ids.append(ids[t - 2] if prev < task.triggers else int(np.searchsorted(cdf[prev], u[t], side="right")))
        prev = ids[t]
    return ids


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=512)
    p.add_argument("--seq_len", type=int, default=256)
    args = p.parse_args()
    task, indices = BigramBackcopy(), list(range(args.rows))
    start = time.perf_counter()
    batched = task.rows(args.seq_len, 0, 0, indices)
    together = time.perf_counter() - start
    start = time.perf_counter()
    single = [token_at_a_time(task, args.seq_len, 0, 0, i) for i in indices]
    alone = time.perf_counter() - start
    assert batched.tolist() == single
    print(
        f"{args.rows} rows x {args.seq_len}: batched {together * 1e3:.0f} ms, token at a time {alone * 1e3:.0f} ms, "
        f"ratio {alone / together:.1f}x"
    )


if __name__ == "__main__":
    main()
