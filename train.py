"""Train a causal LM with or without V-scale: `python train.py fit --config configs/tiny.yaml`."""

from vscale.cli import main

if __name__ == "__main__":
    main()
