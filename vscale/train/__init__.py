"""The training stage: `VScaleLM` (the LightningModule, `module`), the `train.py` CLI (`cli`), the
optimizer recipe (`optim`), the run layout and derived trainer settings (`config`), checkpoint
safety (`checkpoint`), the resumable CSV logger (`loggers`), the Slurm facts a stopping run needs
(`slurm`) and every training callback (`callbacks/`)."""
