"""The recursion's fast path: custom autograd functions used when a gradient is wanted, with
their loops compiled (CPU) and as torch operations.

The pmf it computes is the same arithmetic as the plain loop (so bit-for-bit equal); the
gradient is hand-written, so it is checked against brute-force enumeration (the leave-one-out
formula), against autograd through the plain loop, and with ``gradcheck``.
"""

from __future__ import annotations

import pytest
import torch
from test_poisson_binomial import brute_force_pmf, leave_one_out_jacobian

import avvp.poisson_binomial as pb
from avvp.poisson_binomial import poisson_binomial_pmf, poisson_binomial_tail

SPEC_ATOL = 1e-9


@pytest.fixture(autouse=True, params=[True, False], ids=["compiled", "torch-loops"])
def loops(request, monkeypatch):
    """Every test runs the fast path's loops both ways: compiled (CPU) and as torch operations
    (what other devices run)."""
    monkeypatch.setattr(pb, "CPU_KERNELS", request.param)


def graph_nodes(tensor: torch.Tensor) -> set[str]:
    """Names of every autograd node behind ``tensor``."""
    seen, stack = set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node not in seen:
            seen.add(node)
            stack += [child for child, _ in node.next_functions]
    return {type(node).__name__ for node in seen}


def mixed_probabilities(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Uniform probabilities with exact 0s, 1s and 1/2s and some near the ends."""
    generator = torch.Generator().manual_seed(seed)
    probs = torch.rand(shape, generator=generator, dtype=torch.float64)
    pick = torch.rand(shape, generator=generator)
    probs = torch.where(pick < 0.1, 0.0, probs)
    probs = torch.where((pick >= 0.1) & (pick < 0.2), 1.0, probs)
    probs = torch.where((pick >= 0.2) & (pick < 0.25), 0.5, probs)
    return torch.where((pick >= 0.25) & (pick < 0.3), probs * 1e-6, probs)


def slow_tail(probs: torch.Tensor, tau: torch.Tensor, monkeypatch) -> torch.Tensor:
    """The tail with the fast path switched off: autograd through the plain loop."""
    with monkeypatch.context() as patch:
        patch.setattr(pb, "FAST_MAX_N", 0)
        return poisson_binomial_tail(probs, tau)


def test_fast_path_is_taken_only_with_a_gradient():
    probs = torch.rand(4, 3, 10, dtype=torch.float64)
    tau = torch.full((4, 3), 2)
    assert poisson_binomial_tail(probs, tau).grad_fn is None  # no gradient wanted
    probs.requires_grad_()
    assert "_RecursionTailBackward" in graph_nodes(poisson_binomial_tail(probs, tau))
    assert "_RecursionTailBackward" not in graph_nodes(
        poisson_binomial_tail(probs, tau, method="dft")
    )
    assert "_RecursionPmfBackward" in graph_nodes(poisson_binomial_pmf(probs))
    with torch.no_grad():
        assert poisson_binomial_pmf(probs).grad_fn is None
    big = torch.rand(2, pb.FAST_MAX_N + 1, dtype=torch.float64, requires_grad=True)
    assert "_RecursionPmfBackward" not in graph_nodes(poisson_binomial_pmf(big))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 10, 16])
def test_fast_pmf_matches_brute_force_and_the_plain_loop_exactly(n):
    probs = mixed_probabilities((6, n), seed=n)
    fast = poisson_binomial_pmf(probs.clone().requires_grad_())
    assert "_RecursionPmfBackward" in graph_nodes(fast)
    for row, p in zip(fast.detach(), probs, strict=True):
        torch.testing.assert_close(row, brute_force_pmf(p), rtol=0, atol=SPEC_ATOL)
    plain = poisson_binomial_pmf(probs)
    if pb.CPU_KERNELS:  # the same products and sums; torch's loop fuses multiply-adds, numba not
        torch.testing.assert_close(fast.detach(), plain, rtol=1e-14, atol=0)
    else:  # the same multiplications and additions in the same order as without a gradient
        assert torch.equal(fast.detach(), plain)


@pytest.mark.parametrize("n", [1, 4, 9, 12])
def test_fast_tail_matches_brute_force_for_every_tau(n):
    probs = mixed_probabilities((5, n), seed=50 + n)
    for tau in range(-1, n + 2):
        got = poisson_binomial_tail(probs.clone().requires_grad_(), torch.full((5,), tau))
        expected = torch.tensor(
            [float(brute_force_pmf(p)[max(tau, 0) :].sum()) for p in probs], dtype=torch.float64
        )
        torch.testing.assert_close(got.detach(), expected, rtol=0, atol=1e-12)
        if tau <= 0:
            assert bool((got == 1).all())
        if tau > n:
            assert bool((got == 0).all())


@pytest.mark.parametrize("n", [1, 3, 7, 12])
def test_fast_jacobian_is_the_leave_one_out_formula(n):
    for p in mixed_probabilities((3, n), seed=100 + n):
        jacobian = torch.autograd.functional.jacobian(poisson_binomial_pmf, p)
        torch.testing.assert_close(jacobian, leave_one_out_jacobian(p), rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 10, 20, 40, 128])
def test_fast_gradients_match_autograd_through_the_plain_loop(n, monkeypatch):
    probs = mixed_probabilities((3, 4, n), seed=200 + n)
    generator = torch.Generator().manual_seed(n)
    outer = torch.randn(3, 4, n + 1, generator=generator, dtype=torch.float64)
    tau = torch.randint(-1, n + 2, (3, 4), generator=generator)

    fast_input = probs.clone().requires_grad_()
    (poisson_binomial_pmf(fast_input) * outer).sum().backward()
    slow_input = probs.clone().requires_grad_()
    (pb._pmf_recursion(slow_input) * outer).sum().backward()
    torch.testing.assert_close(fast_input.grad, slow_input.grad, rtol=1e-12, atol=1e-13)

    weights = torch.randn(3, 4, generator=generator, dtype=torch.float64)
    fast_input.grad = slow_input.grad = None
    fast_tail = poisson_binomial_tail(fast_input, tau)
    (fast_tail * weights).sum().backward()
    slow = slow_tail(slow_input, tau, monkeypatch)
    (slow * weights).sum().backward()
    assert "_RecursionTailBackward" in graph_nodes(fast_tail)
    assert "_RecursionTailBackward" not in graph_nodes(slow)
    torch.testing.assert_close(fast_tail, slow, rtol=1e-14, atol=1e-300)
    torch.testing.assert_close(fast_input.grad, slow_input.grad, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("n", [10, 20])
def test_fast_path_gradcheck(n):
    generator = torch.Generator().manual_seed(n)
    # Finite differences step 1e-6 either side, so stay inside [0, 1].
    probs = 0.05 + 0.9 * torch.rand(2, 3, n, generator=generator, dtype=torch.float64)
    probs.requires_grad_()
    tau = torch.randint(-1, n + 2, (2, 3), generator=generator)
    assert torch.autograd.gradcheck(poisson_binomial_pmf, (probs,))
    assert torch.autograd.gradcheck(lambda p: poisson_binomial_tail(p, tau), (probs,))


def test_tail_gradient_is_exactly_zero_where_the_tail_is_constant():
    probs = torch.rand(3, 8, dtype=torch.float64, requires_grad=True)
    poisson_binomial_tail(probs, torch.tensor([0, -2, 9])).sum().backward()
    assert bool((probs.grad == 0).all())


def test_float32_input_gets_a_float32_gradient_of_the_float64_computation():
    probs64 = mixed_probabilities((16, 25, 20), seed=7)
    tau = torch.randint(0, 22, (16, 25), generator=torch.Generator().manual_seed(7))
    probs32 = probs64.float().requires_grad_()
    tail = poisson_binomial_tail(probs32, tau)
    assert tail.dtype == torch.float32
    tail.sum().backward()
    assert probs32.grad.dtype == torch.float32
    reference = probs32.detach().double().requires_grad_()
    poisson_binomial_tail(reference, tau).sum().backward()
    torch.testing.assert_close(probs32.grad, reference.grad.float(), rtol=0, atol=0)
