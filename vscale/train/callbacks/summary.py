"""The model summary printed at the start of fit."""

from lightning.pytorch.callbacks import RichModelSummary


class _WithFlops:
    """A Lightning summary whose total_flops is given."""

    def __init__(self, summary, total_flops: int):
        self._summary, self.total_flops = summary, total_flops

    def __getattr__(self, name: str):
        return getattr(self._summary, name)


class RunModelSummary(RichModelSummary):
    """Lightning's summary table, with "Total FLOPs" the FLOPs of one micro-batch's forward and backward of
    the model as trained (counted by the `Throughput` callback): Lightning counts them only on an example
    input the module declares, and prints 0 without one."""

    def _summary(self, trainer, pl_module):
        return _WithFlops(super()._summary(trainer, pl_module), int(getattr(pl_module, "flops_per_batch", 0) or 0))
