"""Dense peak FLOP/s of the accelerators people train on, for MFU (model FLOP utilisation).

Lightning's table misses some (`NVIDIA H200` and `H200 NVL` as the driver names them) and lists the
H100 NVL with its sparse figure; MFU is always against the dense peak. Figures are the vendors'
datasheet numbers per GPU without sparsity, in FLOP/s, by compute dtype: `bf16` (also fp16), `tf32`
(float32 matmuls on tensor cores, `torch.set_float32_matmul_precision` below "highest") and `fp32`.
"""

import torch

T = 1e12
PEAKS = {  # matched on the lower-cased device name, most specific first
    "gh200": {"bf16": 989 * T, "tf32": 494 * T, "fp32": 67 * T},
    "h200 nvl": {"bf16": 835 * T, "tf32": 418 * T, "fp32": 60 * T},
    "h200": {"bf16": 989 * T, "tf32": 494 * T, "fp32": 67 * T},
    "h100 nvl": {"bf16": 835 * T, "tf32": 418 * T, "fp32": 60 * T},
    "h100 pcie": {"bf16": 756 * T, "tf32": 378 * T, "fp32": 51 * T},
    "h100": {"bf16": 989 * T, "tf32": 494 * T, "fp32": 67 * T},  # SXM (the driver says "H100 80GB HBM3")
    "b200": {"bf16": 2250 * T, "tf32": 1100 * T, "fp32": 75 * T},
    "a100": {"bf16": 312 * T, "tf32": 156 * T, "fp32": 19.5 * T},
    "mi300x": {"bf16": 1307.4 * T, "tf32": 653.7 * T, "fp32": 163.4 * T},
}


def compute_kind(dtype: torch.dtype) -> str | None:
    """The column of PEAKS a training dtype computes in; None for dtypes the table has no peak for."""
    if dtype in (torch.bfloat16, torch.float16):
        return "bf16"
    if dtype == torch.float32:
        return "fp32" if torch.get_float32_matmul_precision() == "highest" else "tf32"
    return None


def device_peak(device_name: str, dtype: torch.dtype) -> float | None:
    """Dense peak FLOP/s of one device named `device_name` (as torch.cuda.get_device_name gives it) computing in
    `dtype`."""
    name, kind = device_name.lower(), compute_kind(dtype)
    chip = next((chip for chip in PEAKS if chip in name), None)
    return PEAKS[chip][kind] if chip and kind else None
