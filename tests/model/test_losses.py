"""The fused full-softmax cross-entropy against the autograd reference (values and gradients)."""

from __future__ import annotations

import pytest
import torch

from liverec.model.losses import full_softmax_ce, full_softmax_ce_reference


def _case(m: int, n: int, d: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(m, d, generator=g) * 2
    table = torch.randn(n + 1, d, generator=g)
    target = torch.randint(1, n + 1, (m,), generator=g)
    target[: m // 3] = target[0]  # repeated targets: index_add must accumulate
    return h, table, target


def _grads(fn, h, table, target, smoothing):
    h = h.clone().requires_grad_()
    table = table.clone().requires_grad_()
    loss = fn(h, target, table, smoothing)
    loss.backward()
    return loss.detach(), h.grad, table.grad


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("m,n,d", [(1, 5, 3), (37, 300, 16), (200, 1000, 64)])
def test_fused_matches_reference(m, n, d, smoothing):
    h, table, target = _case(m, n, d, seed=m + n)
    fused = _grads(full_softmax_ce, h, table, target, smoothing)
    ref = _grads(full_softmax_ce_reference, h, table, target, smoothing)
    torch.testing.assert_close(fused[0], ref[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused[1], ref[1], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fused[2], ref[2], rtol=1e-4, atol=1e-6)
    assert torch.all(fused[2][0] == 0)  # the padding row is never a class


def test_fused_propagates_non_finite():
    h, table, target = _case(8, 50, 4, seed=1)
    table[3, 0] = float("nan")
    assert not torch.isfinite(full_softmax_ce(h, target, table))


def test_autocast_takes_the_reference_path():
    h, table, target = _case(16, 40, 8, seed=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = full_softmax_ce(h, target, table)
    ref = full_softmax_ce_reference(h, target, table)
    assert abs(float(loss) - float(ref)) < 0.05
