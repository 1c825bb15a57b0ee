"""Which CPU kernels a run computes with, pinned so that a CPU run gives the same numbers on any x86
machine (../shared/notes: the ISA ATen dispatches to, not the thread count, is what differs).

ATen picks its vectorised kernels (default, AVX2, AVX512) from the CPU when torch initialises, and
MKL and oneDNN pick theirs: at a large learning rate such rounding differences decide which seeds
grow a sink. `run.cpu_capability` pins all three, through the environment variables each reads
before its first use; a process started without them is re-executed once with them set.
"""

import os
import platform
import re
import sys

import torch

from vscale.errors import UserError

CAPABILITIES = ("default", "avx2", "avx512")
"""ATen's x86 dispatch levels, lowest first: `avx2` runs on every x86-64 CPU since 2013."""
MKL_CBWR = {"default": "COMPATIBLE", "avx2": "AVX2", "avx512": "AVX512"}
ONEDNN_MAX_CPU_ISA = {"default": "SSE41", "avx2": "AVX2", "avx512": "AVX512_CORE"}


def environment(capability: str) -> dict[str, str]:
    """The variables that make ATen, MKL and oneDNN dispatch `capability` kernels."""
    return {
        "ATEN_CPU_CAPABILITY": capability,
        "MKL_CBWR": MKL_CBWR[capability],
        "ONEDNN_MAX_CPU_ISA": ONEDNN_MAX_CPU_ISA[capability],
    }


def dispatched() -> str:
    """The kernels ATen dispatches to in this process (default, avx2, avx512, or another ISA's name)."""
    return torch.backends.cpu.get_cpu_capability().lower()


def check_capability(capability: str | None) -> None:
    if capability is not None and capability not in CAPABILITIES:
        raise UserError(
            f"run.cpu_capability={capability!r}: choose one of {', '.join(CAPABILITIES)} (x86 kernel levels), or null "
            "for the machine's best (numbers then differ between machines)."
        )


def runs_on_this_cpu(capability: str) -> bool:
    """Whether this CPU has the instructions of `capability` (torch would dispatch them anyway, and die of SIGILL)."""
    return {"default": True, "avx2": torch.cpu._is_avx2_supported(), "avx512": torch.cpu._is_avx512_supported()}[
        capability
    ]


def pin(capability: str | None, may_restart: bool) -> None:
    """Make this process compute with `capability` kernels: nothing when it already does; else
    re-execute it with the environment set (`may_restart`, a command-line run) or refuse."""
    check_capability(capability)
    if capability is None:
        return
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        raise UserError(
            f"run.cpu_capability={capability}: pins x86 kernels, and this CPU is {platform.machine()}; set "
            "run.cpu_capability=null (a run then reproduces on CPUs of the same kind only; README, Reproducibility)."
        )
    if not runs_on_this_cpu(capability):
        lower = [c for c in CAPABILITIES[: CAPABILITIES.index(capability)] if runs_on_this_cpu(c)]
        raise UserError(
            f"run.cpu_capability={capability}: this CPU cannot run {capability} kernels; "
            f"use {' or '.join(lower)}, or null."
        )
    wanted = environment(capability)
    settings = " ".join(f"{k}={v}" for k, v in wanted.items())
    if all(os.environ.get(k) == v for k, v in wanted.items()):
        if dispatched() != capability:
            raise UserError(
                f"run.cpu_capability={capability}: torch dispatches {dispatched()} kernels although {settings} is set: "
                "set it before torch is imported."
            )
        return
    if not may_restart:
        raise UserError(
            f"run.cpu_capability={capability}: set {settings} in the environment before torch is imported "
            "(train.py does it by restarting itself), or set run.cpu_capability=null."
        )
    print(f"run.cpu_capability={capability}: restarting with {settings}", file=sys.stderr, flush=True)
    os.execve(sys.executable, sys.orig_argv, {**os.environ, **wanted})


def description() -> dict[str, str | int]:
    """What decides a CPU run's numbers besides its config and seed, for the run's hparams."""
    mkl = re.search(r"Math Kernel Library Version ([0-9.]+)", torch.__config__.show())
    return {
        "env/cpu_capability": dispatched(),
        "env/machine": platform.machine(),
        "env/threads": torch.get_num_threads(),
        "env/torch": str(torch.__version__),
        "env/blas": f"mkl {mkl.group(1)}" if mkl else torch.__config__.show().split("BLAS_INFO=")[-1].split(",")[0],
        **{f"env/{k}": os.environ.get(k, "") for k in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")},
    }
