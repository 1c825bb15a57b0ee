"""Train a causal LM with or without V-scale: `python train.py fit --config configs/tiny.yaml`."""

from vscale.console import one_line_errors
from vscale.train.cli import main

if __name__ == "__main__":
    with one_line_errors("python train.py fit --help"):
        main()
