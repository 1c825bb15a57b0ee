"""The launch stage: `python -m vscale.launch`, a paired sweep submitted to Slurm (`sweep`)."""
