"""The V-scale map of method §2 (docs/method.md), its Jacobian, and the backward-only surrogate."""

import pytest
import torch

from vscale.model.interventions.value_scale import VScale, scale_values, scale_values_backward_only, vscale_constant


def values(b=2, h=3, t=5, d=4, seed=0):
    torch.manual_seed(seed)
    return torch.randn(b, h, t, d, dtype=torch.float64) * torch.linspace(0.1, 3.0, t).view(1, 1, t, 1)


def per_head_c(h=3):
    return torch.tensor([0.5, 2.0, 7.0], dtype=torch.float64)[:h].view(1, h, 1, 1)


def test_constant_is_d_model_times_d_head_times_sigma_squared():
    assert vscale_constant(512, 64) == pytest.approx(512 * 64 * 0.02**2)


def test_forward_matches_spec_formula_token_by_token():
    v, c = values(), per_head_c()
    out = scale_values(v, c)
    for b in range(v.shape[0]):
        for h in range(v.shape[1]):
            for t in range(v.shape[2]):
                vec = v[b, h, t].tolist()
                r = sum(x * x for x in vec)
                C = c.flatten()[h].item()
                expected = [r / (r + C) * x for x in vec]
                assert out[b, h, t].tolist() == pytest.approx(expected, rel=1e-12)


def test_scaled_value_gradients_match_finite_differences():
    v = values(b=1, h=3, t=3, d=3).requires_grad_()
    c = per_head_c().requires_grad_()
    assert torch.autograd.gradcheck(scale_values, (v, c), eps=1e-6, atol=1e-8)


def test_learned_theta_gradient_matches_finite_differences():
    scaler = VScale("learned", num_kv_heads=3, d_model=8, d_head=4).double()
    v = values(b=1, h=3, t=3, d=4)
    w = torch.randn_like(v)
    loss = lambda: (scaler(v) * w).sum()
    loss().backward()
    eps = 1e-6
    for h in range(3):
        with torch.no_grad():
            scaler.theta[h] += eps
            up = loss().item()
            scaler.theta[h] -= 2 * eps
            down = loss().item()
            scaler.theta[h] += eps
        assert scaler.theta.grad[h].item() == pytest.approx((up - down) / (2 * eps), rel=1e-6)


def test_jacobian_eigenvalues_match_spec():
    torch.manual_seed(1)
    d, C = 6, 3.0
    v = torch.randn(d, dtype=torch.float64) * 0.8
    c = torch.tensor(C, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda x: scale_values(x.view(1, 1, 1, d), c).view(d), v)
    r = v.pow(2).sum().item()
    eig = torch.linalg.eigvalsh((J + J.T) / 2).tolist()
    expected = sorted([r / (r + C)] * (d - 1) + [(r * r + 3 * C * r) / (r + C) ** 2])
    assert eig == pytest.approx(expected, rel=1e-10)
    along_v = J @ v / v.norm()
    assert (along_v / (v / v.norm())).tolist() == pytest.approx([(r * r + 3 * C * r) / (r + C) ** 2] * d, rel=1e-10)


def test_backward_mode_forward_is_bit_identical_to_input():
    v = values().float()
    assert torch.equal(scale_values_backward_only(v, per_head_c().float()), v)


def test_backward_mode_value_gradient_is_jacobian_transpose_times_upstream():
    v, c = values(), per_head_c()
    g = torch.randn_like(v)
    _, expected = torch.autograd.functional.vjp(lambda x: scale_values(x, c), v, g)
    x = v.clone().requires_grad_()
    scale_values_backward_only(x, c).backward(g)
    assert torch.allclose(x.grad, expected, rtol=1e-12, atol=1e-14)


def test_backward_mode_equals_spec_stop_gradient_surrogate():
    v, c = values(), per_head_c()
    g = torch.randn_like(v)
    a = v.clone().requires_grad_()
    phi = a.pow(2).sum(-1, keepdim=True) / (a.pow(2).sum(-1, keepdim=True) + c)
    surrogate = a.detach() + (phi * a - (phi * a).detach())
    surrogate.backward(g)
    b = v.clone().requires_grad_()
    scale_values_backward_only(b, c).backward(g)
    assert torch.allclose(b.grad, a.grad, rtol=1e-12, atol=1e-14)


def test_small_norm_values_get_their_gradient_attenuated():
    c = torch.tensor(1.0, dtype=torch.float64).view(1, 1, 1, 1)
    small = torch.full((1, 1, 1, 4), 0.05, dtype=torch.float64, requires_grad=True)
    large = torch.full((1, 1, 1, 4), 5.0, dtype=torch.float64, requires_grad=True)
    scale_values_backward_only(small, c).sum().backward()
    scale_values_backward_only(large, c).sum().backward()
    assert small.grad.norm() < 0.05 * large.grad.norm()


def test_learned_theta_is_a_parameter_with_gradient():
    scaler = VScale("learned", num_kv_heads=3, d_model=8, d_head=4).double()
    assert [n for n, _ in scaler.named_parameters()] == ["theta"]
    assert torch.equal(scaler.theta, torch.zeros(3, dtype=torch.float64))
    scaler(values(d=4)).sum().backward()
    assert scaler.theta.grad is not None and scaler.theta.grad.abs().min() > 0


@pytest.mark.parametrize("mode", ["off", "fixed", "backward"])
def test_other_modes_add_no_parameters_or_state(mode):
    scaler = VScale(mode, num_kv_heads=3, d_model=8, d_head=4)
    assert list(scaler.parameters()) == []
    assert scaler.state_dict() == {}


def test_backward_mode_sends_no_gradient_to_theta():
    scaler = VScale("backward", num_kv_heads=3, d_model=8, d_head=4).double()
    v = values(d=4).requires_grad_()
    scaler(v).sum().backward()
    assert v.grad is not None and scaler.theta.grad is None and not scaler.theta.requires_grad
