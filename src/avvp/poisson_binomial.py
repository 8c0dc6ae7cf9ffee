"""The Poisson-binomial distribution: the count of successes among independent Bernoullis.

PoiBin (SPEC section 5, paper 002) pools segment probabilities through the distribution of the
number of positive segments. Two exact, differentiable, batched ways to get its pmf:

``recursion``
    The O(N^2) dynamic programme ``P_k <- P_k (1 - p) + P_{k-1} p``, one step per Bernoulli and
    vectorised over every other dimension. Every term is a product of non-negative numbers, so
    there is no cancellation: every mass, however small, carries a relative error of at most
    about N float64 epsilons (1.4e-15 measured at N = 100).
``dft``
    The paper's closed form (its Eq. 3), an inverse DFT of the characteristic function
    ``prod_n (1 + (C^l - 1) p_n)``, ``C = exp(2 pi i / (N + 1))``. Its error is absolute (a few
    float64 epsilons, at most 2.3e-15 measured up to N = 1000), so masses below ~1e-15 come out
    as rounding noise (clamped at 0), and it materialises a (..., N/2 + 1, N) complex tensor.

Both compute in float64 (complex128) whatever the input dtype and cast the result back, so a
float32 model gets a float32 pmf that is as accurate as float32 can hold.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from avvp.choices import Choice


class PmfMethod(Choice, label="pmf method"):
    """How the pmf is computed (see the module docstring)."""

    RECURSION = "recursion"
    DFT = "dft"


def _check_probs(probs: Tensor) -> None:
    if not isinstance(probs, Tensor):
        raise TypeError(f"probs must be a torch.Tensor, got {type(probs).__name__}")
    if not probs.is_floating_point():
        raise TypeError(f"probs must be a floating-point tensor, got {probs.dtype}")
    if probs.ndim == 0:
        raise ValueError("probs must have at least one dimension (..., N)")
    # One device sync: comparisons with NaN are False, so NaN lands in ``bad`` too.
    bad = ~((probs >= 0) & (probs <= 1))
    if bool(bad.any()):
        if bool(torch.isnan(probs).any()):
            raise ValueError("probs contains NaN")
        low, high = float(probs.min()), float(probs.max())
        raise ValueError(f"probs must lie in [0, 1]; got values in [{low}, {high}]")


def _pmf_recursion(probs: Tensor) -> Tensor:
    """float64 (..., N) -> float64 (..., N + 1)."""
    pmf = torch.ones(*probs.shape[:-1], 1, dtype=probs.dtype, device=probs.device)
    steps = zip(probs.unsqueeze(-1).unbind(-2), (1 - probs).unsqueeze(-1).unbind(-2), strict=True)
    for p, q in steps:
        # After n steps only k = 0..n can be non-zero, so the pmf grows by one entry a step
        # (half the work of full-length updates); a zero on each end makes P_{-1} = P_{n+1} = 0.
        padded = torch.nn.functional.pad(pmf, (1, 1))
        pmf = torch.addcmul(padded[..., 1:] * q, padded[..., :-1], p)
    return pmf


def _pmf_dft(probs: Tensor) -> Tensor:
    """float64 (..., N) -> float64 (..., N + 1) by the paper's Eq. 3."""
    size = probs.shape[-1] + 1
    # The characteristic function is Hermitian (phi(size - l) = conj(phi(l))), so half of it is
    # enough for hfft, which halves the (..., L, N) tensor that dominates time and memory.
    frequencies = torch.arange(size // 2 + 1, dtype=torch.float64, device=probs.device)
    angles = 2 * math.pi * frequencies / size
    roots_minus_one = torch.polar(torch.ones_like(angles), angles) - 1  # C^l - 1
    factors = 1 + roots_minus_one.unsqueeze(-1) * probs.unsqueeze(-2).to(torch.complex128)
    # A direct product rather than a sum of logs: a factor is exactly 0 when C^l = -1 and
    # p = 1/2, where log would give -inf and NaN gradients; prod's backward handles zeros.
    characteristic = factors.prod(dim=-1)
    # hfft(phi, n)[k] = sum_l phi(l) C^{-lk} over the Hermitian extension: Eq. 3 times (N + 1).
    pmf = torch.fft.hfft(characteristic, n=size, dim=-1) / size
    # Rounding leaves masses that should be ~0 slightly negative: clamp the value but keep the
    # gradient of Eq. 3 itself, which a plain clamp would zero wherever a mass is exactly 0 (e.g.
    # d pmf(N) / d p_n at p_n = 0 is positive, and the clamp would make it 0 at random).
    return pmf + (pmf.clamp_min(0) - pmf).detach()


def _pmf64(probs: Tensor, method: str | PmfMethod) -> Tensor:
    """Validated float64 pmf: the shared core of the public functions."""
    method = PmfMethod.parse(method)
    _check_probs(probs)
    probs64 = probs.to(torch.float64)
    if method is PmfMethod.RECURSION:
        return _pmf_recursion(probs64)
    return _pmf_dft(probs64)


def poisson_binomial_pmf(probs: Tensor, method: str | PmfMethod = "recursion") -> Tensor:
    """pmf over k = 0..N of the number of successes among independent Bernoulli(probs[..., n]).

    ``probs`` (..., N) in [0, 1] -> (..., N + 1) in the dtype of ``probs``; differentiable.
    ``method``: ``recursion`` (default) or ``dft`` (the paper's Eq. 3).
    """
    return _pmf64(probs, method).to(probs.dtype)


def poisson_binomial_tail(
    probs: Tensor, tau: Tensor | int, method: str | PmfMethod = "recursion"
) -> Tensor:
    """P(z >= tau), z the number of successes: the PoiBin pooling (SPEC section 5).

    ``probs`` (..., N); ``tau`` an integer tensor broadcastable to ``probs.shape[:-1]``.
    Returns ``probs.shape[:-1]`` in the dtype of ``probs``; tau <= 0 gives exactly 1 and
    tau > N exactly 0. Differentiable in ``probs``.
    """
    pmf = _pmf64(probs, method)
    tau = torch.as_tensor(tau, device=pmf.device)
    if tau.is_floating_point() or tau.is_complex():
        raise TypeError(f"tau must be an integer tensor, got {tau.dtype}")
    size = pmf.shape[-1]
    batch_shape = probs.shape[:-1]
    tau = torch.broadcast_to(tau, batch_shape).to(torch.long)
    # Summing from the top keeps small tails (negatives at tau = 1) accurate instead of
    # computing them as 1 - (something close to 1); the appended 0 is P(z >= N + 1).
    tails = torch.flip(torch.cumsum(torch.flip(pmf, (-1,)), dim=-1), (-1,))
    tails = torch.nn.functional.pad(tails, (0, 1))
    index = tau.clamp(0, size).unsqueeze(-1)
    tail = torch.gather(tails, -1, index).squeeze(-1)
    tail = torch.where(tau <= 0, torch.ones_like(tail), tail)
    return tail.to(probs.dtype)


@torch.no_grad()
def most_likely_count(
    probs: Tensor, minimum: int = 0, method: str | PmfMethod = "recursion"
) -> Tensor:
    """argmax_k pmf(k) (the first one on ties), clamped to >= ``minimum``: the PoiBin E-step.

    ``probs`` (..., N) -> long (...,).
    """
    counts = _pmf64(probs, method).argmax(dim=-1)
    return counts.clamp_min(minimum)
