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

When a gradient is wanted and N <= ``FAST_MAX_N`` (the method's sizes: T = 10 segments, 2T for
joint counting, 2T and 4T for augmentation), ``recursion`` runs the same steps inside a custom
autograd function with a hand-written backward, because at these sizes the time is the number
of small operations, not arithmetic: autograd through the plain loop records three nodes a
Bernoulli and replays them. The forward keeps every intermediate pmf P^n (one preallocated
tensor, batch innermost, two in-place operations a step); the backward is the recursion's
adjoint, A^{n-1}(k) = A^n(k) + p_n (A^n(k+1) - A^n(k)), with d/dp_n = sum_k P^{n-1}(k)
(A^n(k+1) - A^n(k)) (the pmf's derivative, pmf_without_n(k-1) - pmf_without_n(k), contracted
with the incoming gradient), three operations a step. On CPU tensors both loops run compiled
(avvp.poisson_binomial_kernels, numba), one call each instead of a few operations a Bernoulli;
on other devices as torch operations. The forward is the same products and sums of
non-negative numbers as before, so the pmf keeps its relative precision. Without a gradient
(the E-step over the whole train set) or above ``FAST_MAX_N`` (where it would keep an
(N + 1) x (N + 2) float64 tensor a row) the loop runs under autograd as it always did.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from avvp.choices import Choice

# Past this N the custom function's saved pmfs, (N + 1) x (N + 2) float64 a row, outweigh its
# gain (the per-call overhead it removes matters less and less as the arithmetic grows).
FAST_MAX_N = 128
# The fast path on CPU tensors runs compiled loops (avvp.poisson_binomial_kernels); elsewhere, or
# with this False, the same steps as torch operations.
CPU_KERNELS = True


class PmfMethod(Choice, label="pmf method"):
    """How the pmf is computed (see the module docstring)."""

    RECURSION = "recursion"
    DFT = "dft"


def _check_form(probs: Tensor) -> None:
    """A TypeError or ValueError unless ``probs`` is a floating-point tensor (..., N)."""
    if not isinstance(probs, Tensor):
        raise TypeError(f"probs must be a torch.Tensor, got {type(probs).__name__}")
    if not probs.is_floating_point():
        raise TypeError(f"probs must be a floating-point tensor, got {probs.dtype}")
    if probs.ndim == 0:
        raise ValueError("probs must have at least one dimension (..., N)")


def _check_range(low: float, high: float, has_nan: bool) -> None:
    """A ValueError unless the values, of least ``low`` and largest ``high``, lie in [0, 1]."""
    if has_nan:
        raise ValueError("probs contains NaN")
    if not (low >= 0 and high <= 1):
        raise ValueError(f"probs must lie in [0, 1]; got values in [{low}, {high}]")


def _check_probs(probs: Tensor) -> None:
    _check_form(probs)
    if probs.numel() == 0:
        return
    # One reduction and one device sync: min and max propagate NaN, and comparisons with NaN
    # are False, so NaN fails the range test too.
    low, high = torch.stack(torch.aminmax(probs)).tolist()
    if not (low >= 0 and high <= 1):
        _check_range(low, high, bool(torch.isnan(probs).any()))


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


def _compiled(p: Tensor) -> bool:
    """Whether the fast path's loops run compiled (CPU_KERNELS) for this tensor: CPU, and a
    dtype numpy has."""
    return CPU_KERNELS and p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64)


def _recursion_steps(probs: Tensor) -> tuple[Tensor, Tensor]:
    """(R, N) -> p (N, R) float64 and every intermediate pmf, (N + 1, N + 2, R) float64.

    ``pmfs[n, 1 + k]`` = P^n(k), the pmf of the first n Bernoullis; column 0 is P(-1) = 0.
    Layout (k, row), rows innermost, so each step is one contiguous (N + 1, R) block.
    """
    rows, n = probs.shape
    # One copy makes the float64, (N, R) layout.
    p = torch.empty(n, rows, dtype=torch.float64, device=probs.device).copy_(probs.t())
    pmfs = p.new_empty(n + 1, n + 2, rows)
    if _compiled(p):
        from avvp import poisson_binomial_kernels

        poisson_binomial_kernels.recursion_steps(p.numpy(), pmfs.numpy())
        return p, pmfs
    q = 1 - p
    pmfs[:, 0] = 0
    pmfs[0, 1:] = 0
    pmfs[0, 1] = 1
    # Views made once: slicing inside the loop would cost as much as the arithmetic.
    current, previous = pmfs[:, 1:].unbind(0), pmfs[:, :-1].unbind(0)
    for step, (p_n, q_n) in enumerate(zip(p.unbind(0), q.unbind(0), strict=True)):
        torch.mul(current[step], q_n, out=current[step + 1])
        current[step + 1].addcmul_(previous[step], p_n)
    return p, pmfs


def _recursion_gradient(p: Tensor, pmfs: Tensor, outer: Tensor) -> Tensor:
    """d/dp of sum_k outer(k) pmf(k) from :func:`_recursion_steps`' output: (N, R).

    ``outer`` (N + 1, R) is the gradient arriving at the pmf. The recursion's adjoint
    A^N = outer, A^{n-1}(k) = A^n(k) + p_n (A^n(k + 1) - A^n(k)), and the gradient
    d/dp_n = sum_k P^{n-1}(k) (A^n(k + 1) - A^n(k)).
    """
    if _compiled(p):
        from avvp import poisson_binomial_kernels

        adjoint = outer.detach().contiguous().numpy()
        return torch.from_numpy(
            poisson_binomial_kernels.recursion_gradient(p.numpy(), pmfs.numpy(), adjoint)
        )
    n, rows = p.shape
    # Two adjoint buffers taking turns: A^n in one, A^{n-1} written into the other. Full width
    # throughout: A^n is only needed on k <= n; the entries above it meet P = 0 and only have
    # to be finite (hence zeros, not empty, for the one entry never written).
    buffers = p.new_zeros(2, n + 1, rows)
    buffers[n % 2] = outer
    upper, lower = buffers[:, 1:].unbind(0), buffers[:, :-1].unbind(0)
    before = pmfs[:n, 1:-1].unbind(0)  # P^{n-1}(k), k = 0..N-1
    differences = p.new_empty(n, rows)
    gradient = p.new_empty(n, rows)
    for step in range(n, 0, -1):
        this, other = step % 2, (step - 1) % 2
        torch.sub(upper[this], lower[this], out=differences)
        torch.linalg.vecdot(before[step - 1], differences, dim=0, out=gradient[step - 1])
        torch.addcmul(lower[this], differences, p[step - 1], out=lower[other])
    return gradient


class _RecursionPmf(torch.autograd.Function):
    """(R, N) -> float64 (R, N + 1): the recursion with a hand-written backward."""

    @staticmethod
    def forward(ctx: FunctionCtx, probs: Tensor) -> Tensor:
        p, pmfs = _recursion_steps(probs)
        ctx.save_for_backward(p, pmfs)
        ctx.input_dtype = probs.dtype
        return pmfs[-1, 1:].t()

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> Tensor:
        p, pmfs = ctx.saved_tensors
        return _recursion_gradient(p, pmfs, grad.t()).t().to(ctx.input_dtype)


class _RecursionTail(torch.autograd.Function):
    """(R, N), tau (R,) -> P(z >= tau) (R,) in probs' dtype; one autograd node for it all.

    The tail's gradient is the pmf's with outer(k) = [k >= tau] times the incoming gradient.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, probs: Tensor, tau: Tensor) -> Tensor:
        ctx.input_dtype = probs.dtype
        ctx.compiled = _compiled(probs)
        if ctx.compiled:
            # One compiled call gives the tail and its Jacobian (each row's tail depends on that
            # row alone), so the backward is a multiplication.
            from avvp import poisson_binomial_kernels

            tails, jacobian, low, high, has_nan = poisson_binomial_kernels.tail_and_jacobian(
                probs.detach().contiguous().numpy(), tau.to(torch.int64).contiguous().numpy()
            )
            _check_range(low, high, has_nan)  # the range check the other paths make first
            ctx.save_for_backward(torch.from_numpy(jacobian))
            return torch.from_numpy(tails)
        p, pmfs = _recursion_steps(probs)
        pmf = pmfs[-1, 1:]  # (N + 1, R)
        counts = torch.arange(pmf.shape[0], device=pmf.device)
        reached = counts[:, None] >= tau[None, :]
        # Summing the masses k >= tau themselves keeps small tails (negatives at tau = 1)
        # accurate instead of computing them as 1 - (something close to 1).
        tail = torch.where(reached, pmf, 0).sum(0)
        tail = torch.where(tau <= 0, 1, tail)  # exactly 1, not a sum that rounds to 1 - 1e-16
        ctx.save_for_backward(p, pmfs, reached)
        return tail.to(probs.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:
        if ctx.compiled:
            (jacobian,) = ctx.saved_tensors  # (R, N) float64: the product is float64
            return torch.mul(jacobian, grad[:, None]).to(ctx.input_dtype), None
        p, pmfs, reached = ctx.saved_tensors
        outer = reached * grad.to(torch.float64)[None, :]
        return _recursion_gradient(p, pmfs, outer).t().to(ctx.input_dtype), None


def _fast_path(probs: Tensor, method: PmfMethod) -> bool:
    """Whether the custom autograd functions apply (module docstring)."""
    return (
        method is PmfMethod.RECURSION
        and 1 <= probs.shape[-1] <= FAST_MAX_N
        and probs.requires_grad
        and torch.is_grad_enabled()
    )


def _validated(probs: Tensor, method: str | PmfMethod) -> PmfMethod:
    """The parsed method, after checking ``probs``: the public functions' first step."""
    method = PmfMethod.parse(method)
    _check_probs(probs)
    return method


def _pmf64(probs: Tensor, method: PmfMethod) -> Tensor:
    """float64 pmf of validated ``probs``: the shared core of the public functions."""
    if _fast_path(probs, method):
        n = probs.shape[-1]
        return _RecursionPmf.apply(probs.reshape(-1, n)).reshape(*probs.shape[:-1], n + 1)
    if method is PmfMethod.DFT:
        return _pmf_dft(probs.to(torch.float64))
    return _pmf_recursion(probs.to(torch.float64))


def poisson_binomial_pmf(probs: Tensor, method: str | PmfMethod = "recursion") -> Tensor:
    """pmf over k = 0..N of the number of successes among independent Bernoulli(probs[..., n]).

    ``probs`` (..., N) in [0, 1] -> (..., N + 1) in the dtype of ``probs``; differentiable.
    ``method``: ``recursion`` (default) or ``dft`` (the paper's Eq. 3).
    """
    return _pmf64(probs, _validated(probs, method)).to(probs.dtype)


def poisson_binomial_tail(
    probs: Tensor, tau: Tensor | int, method: str | PmfMethod = "recursion"
) -> Tensor:
    """P(z >= tau), z the number of successes: the PoiBin pooling (SPEC section 5).

    ``probs`` (..., N); ``tau`` an integer tensor broadcastable to ``probs.shape[:-1]``.
    Returns ``probs.shape[:-1]`` in the dtype of ``probs``; tau <= 0 gives exactly 1 and
    tau > N exactly 0. Differentiable in ``probs``.
    """
    method = PmfMethod.parse(method)
    _check_form(probs)
    tau = torch.as_tensor(tau, device=probs.device)
    if tau.is_floating_point() or tau.is_complex():
        raise TypeError(f"tau must be an integer tensor, got {tau.dtype}")
    tau = torch.broadcast_to(tau, probs.shape[:-1])
    if _fast_path(probs, method):  # checks the range itself (compiled: inside the kernel)
        n = probs.shape[-1]
        if not _compiled(probs):
            _check_probs(probs)
        flat = _RecursionTail.apply(probs.reshape(-1, n), tau.reshape(-1))
        return flat.reshape(probs.shape[:-1])
    _check_probs(probs)
    pmf = _pmf64(probs, method)
    # Summing the masses k >= tau themselves keeps small tails (negatives at tau = 1) accurate
    # instead of computing them as 1 - (something close to 1); tau > N masks every mass.
    counts = torch.arange(pmf.shape[-1], device=pmf.device)
    tail = torch.where(counts >= tau.unsqueeze(-1), pmf, 0).sum(-1)
    tail = torch.where(tau <= 0, 1, tail)  # exactly 1, not a sum that rounds to 1 - 1e-16
    return tail.to(probs.dtype)


@torch.no_grad()
def most_likely_count(
    probs: Tensor, minimum: int = 0, method: str | PmfMethod = "recursion"
) -> Tensor:
    """argmax_k pmf(k) (the first one on ties), clamped to >= ``minimum``: the PoiBin E-step.

    ``probs`` (..., N) -> long (...,).
    """
    counts = _pmf64(probs, _validated(probs, method)).argmax(dim=-1)
    return counts.clamp_min(minimum)
