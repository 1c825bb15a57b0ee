"""Diagnostics under torch FSDP (FULL_SHARD, use_orig_params, one shard unit per decoder layer,
as configs/paper-1b.yaml), on 2 gloo CPU processes: every metric equals the unsharded model's
on the same rows, and theta stays float32 when FSDP computes in bf16. Lightning refuses FSDP on
CPU, so torch's FSDP is called directly."""

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import tiny_model

from vscale import apply_vscale
from vscale.diagnostics import Pooled, Probe, diagnose_batches, flatten

ROWS = torch.randint(0, 97, (4, 40), generator=torch.Generator().manual_seed(3))


def model(mode: str = "learned"):
    """Identical on every process: seeded weights, theta set away from 0, attention sharpened."""
    m = apply_vscale(tiny_model("llama", 2, seed=1), mode)
    with torch.no_grad():
        for l, layer in enumerate(m.model.layers):
            layer.self_attn.q_proj.weight.mul_(6.0)
            layer.self_attn.vscale.theta.copy_(torch.tensor([0.5, -1.0]) * (l + 1))
    return m


def wrap(m, mixed_precision=None):
    from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    return FullyShardedDataParallel(
        m,
        sharding_strategy=ShardingStrategy.FULL_SHARD,
        use_orig_params=True,
        device_id=torch.device("cpu"),
        auto_wrap_policy=ModuleWrapPolicy({LlamaDecoderLayer}),
        mixed_precision=mixed_precision,
    )


def sharded_metrics(rows) -> dict:
    """Every diagnostic of one step of the sharded model on this rank's rows, pooled over ranks."""
    m = model()
    sharded = wrap(m)
    with Probe(m) as probe:
        sharded(input_ids=rows, labels=rows).loss.backward()
    pooled = Pooled()
    pooled.update(probe.sums())
    return flatten(pooled.compute())


def dtypes_under_bf16(rows) -> dict:
    """The dtypes theta and a projection weight have inside the forward when FSDP computes in bf16."""
    from torch.distributed.fsdp import MixedPrecision

    from vscale.model import vscale_modules
    from vscale.model.fsdp import keep_vscale_float32

    m = model()
    sharded = wrap(
        m,
        keep_vscale_float32(
            MixedPrecision(param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16, buffer_dtype=torch.bfloat16)
        ),
    )
    seen = {}

    def dtype_of(key: str, tensor_name: str):
        def hook(module, args) -> None:
            seen.setdefault(key, str(getattr(module, tensor_name).dtype))

        return hook

    vscale_modules(m)[0].register_forward_pre_hook(dtype_of("theta", "theta"))
    m.model.layers[0].self_attn.q_proj.register_forward_pre_hook(dtype_of("q_proj", "weight"))
    sharded(input_ids=rows, labels=rows).loss.backward()
    return seen


def worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    try:
        rows = ROWS[2 * rank : 2 * rank + 2]
        result = {"metrics": sharded_metrics(rows), "mixed": dtypes_under_bf16(rows)}
        if rank == 0:
            with open(out, "w") as f:
                json.dump(result, f)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> dict:
    """What rank 0 saw, both tasks in one pair of processes (each spends ~12 s importing torch and transformers)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path_factory.mktemp("fsdp") / "rank0.json"
    mp.spawn(worker, args=(port, str(out)), nprocs=2)
    return json.loads(out.read_text())


def test_every_diagnostic_under_fsdp_equals_the_unsharded_models_pooled_over_ranks(two_ranks):
    sharded = two_ranks["metrics"]
    reference = diagnose_batches(model(), [ROWS[:2], ROWS[2:]])[0]
    assert sharded.keys() == reference.keys() and "vscale/lambda_max/layer_1" in sharded
    for name, value in reference.items():
        assert sharded[name] == pytest.approx(value, rel=1e-4, abs=1e-7), name


def test_theta_stays_float32_when_fsdp_computes_in_bf16(two_ranks):
    assert two_ranks["mixed"] == {"theta": "torch.float32", "q_proj": "torch.bfloat16"}


def test_only_low_precision_fsdp_configs_set_v_scale_apart():
    from torch.distributed.fsdp import MixedPrecision

    from vscale.model.fsdp import keep_vscale_float32
    from vscale.model.interventions.value_scale import VScale

    bf16 = keep_vscale_float32(MixedPrecision(param_dtype=torch.bfloat16))
    assert VScale in bf16._module_classes_to_ignore and bf16.param_dtype == torch.bfloat16
    fp32 = MixedPrecision(param_dtype=torch.float32)
    assert keep_vscale_float32(fp32) is fp32
