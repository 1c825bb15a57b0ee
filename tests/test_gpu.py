"""The CUDA paths (the `gpu` marker; skipped without CUDA, run by benchmarks/gpu_check.py on a lent GPU): the fused
log-sum-exp against the recomputation in each dtype, every V-scale mode and attention arm under bf16 autocast against
float32, inductor compilation, and compiled diagnostics against eager ones."""

import pytest
import torch
from conftest import tiny_model

from vscale.diagnostics import diagnose
from vscale.model import ARMS, MODES, apply_interventions
from vscale.model.lse import fused_lse, recomputed_lse

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
TOKENS = torch.randint(0, 97, (2, 64), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2), (torch.float16, 1e-2)])
def test_the_fused_cuda_lse_equals_the_recomputed_one(dtype, tolerance):
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(2, 4, 128, 64, device="cuda", generator=g).to(dtype)
    k = torch.randn(2, 2, 128, 64, device="cuda", generator=g).to(dtype)
    fused = fused_lse(q, k, 0.125)
    assert fused is not None, "a fused kernel returns LSE for this head size and dtype"
    assert torch.allclose(fused.float(), recomputed_lse(q, k, 0.125), atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("arm", list(ARMS))
def test_every_mode_and_arm_under_bf16_autocast_follows_float32(mode, arm):
    model = apply_interventions(tiny_model(), mode, arm).cuda()
    ids = TOKENS.cuda()
    reference = model(input_ids=ids, labels=ids).loss
    with torch.autocast("cuda", dtype=torch.bfloat16):
        mixed = model(input_ids=ids, labels=ids).loss
    assert torch.isfinite(mixed) and mixed.item() == pytest.approx(reference.item(), rel=2e-2)
    mixed.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("mode", ["learned", "backward"])
def test_inductor_compiles_v_scale_and_its_diagnostics_equal_eager(mode):
    eager = apply_interventions(tiny_model(), mode).cuda()
    compiled = apply_interventions(tiny_model(), mode).cuda()
    compiled.compile(backend="inductor")
    ids = TOKENS.cuda()
    assert compiled(input_ids=ids, labels=ids).loss.item() == pytest.approx(
        eager(input_ids=ids, labels=ids).loss.item(), rel=1e-4
    )
    measured, reference = diagnose(compiled, ids), diagnose(eager, ids)
    for name in ("gsink/ratio/median", "sink/alpha/max", "act/v_ratio/mean"):
        assert measured[name] == pytest.approx(reference[name], rel=1e-3), name
