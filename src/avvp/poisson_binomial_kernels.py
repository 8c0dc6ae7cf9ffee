"""The Poisson-binomial recursion and its adjoint as compiled CPU loops (numba).

At PoiBin's sizes (N = 10 to 40 Bernoullis, a few hundred rows) the torch form of the fast path
spends its time launching small operations, a few per Bernoulli; these loops do the same
arithmetic in one call each. Layouts are those of :mod:`avvp.poisson_binomial`'s fast path:
``p`` (N, R) float64, ``pmfs`` (N + 1, N + 2, R) with ``pmfs[n, 1 + k]`` = P^n(k) and column 0
the P(-1) = 0 border, rows innermost. Imported on first use (numba's import and compilation
cost a second or two, once; ``cache=True`` keeps the machine code beside this file).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _row_pmfs(success: np.ndarray, pmfs: np.ndarray) -> None:
    """Fill ``pmfs`` (N + 1, N + 2) with every intermediate pmf P^0 .. P^N of the Bernoullis
    ``success`` (N,), one row of any layout: ``pmfs[n, 1 + k]`` = P^n(k), column 0 the
    P(-1) = 0 border."""
    n = success.shape[0]
    pmfs[0, :] = 0.0
    pmfs[0, 1] = 1.0
    for step in range(n):
        p = np.float64(success[step])
        pmfs[step + 1, 0] = 0.0
        for k in range(1, n + 2):
            pmfs[step + 1, k] = pmfs[step, k] * (1.0 - p) + pmfs[step, k - 1] * p


@njit(cache=True)
def _row_gradient(
    success: np.ndarray, pmfs: np.ndarray, adjoint: np.ndarray, gradient: np.ndarray
) -> None:
    """``gradient`` (N,) = d/dp of sum_k outer(k) P^N(k) for one row, ``adjoint`` (N + 1,)
    holding outer on entry: the recursion's adjoint A^{n-1}(k) = A^n(k) + p_n (A^n(k+1) -
    A^n(k)) and d/dp_n = sum_k P^{n-1}(k) (A^n(k+1) - A^n(k)), as in
    :func:`avvp.poisson_binomial._recursion_gradient`. The adjoint is updated in place, k
    ascending: A^{n-1}(k) needs A^n(k + 1), which is overwritten only after."""
    n = success.shape[0]
    for step in range(n, 0, -1):
        p = np.float64(success[step - 1])
        derivative = 0.0
        for k in range(n):
            difference = adjoint[k + 1] - adjoint[k]
            derivative += pmfs[step - 1, k + 1] * difference
            adjoint[k] += difference * p
        gradient[step - 1] = derivative


@njit(cache=True)
def recursion_steps(p: np.ndarray, pmfs: np.ndarray) -> None:
    """Fill ``pmfs`` (N + 1, N + 2, R) with every intermediate pmf of the Bernoullis ``p``
    (N, R), row by row (:func:`_row_pmfs`)."""
    for row in range(p.shape[1]):
        _row_pmfs(p[:, row], pmfs[:, :, row])


@njit(cache=True)
def recursion_gradient(p: np.ndarray, pmfs: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """d/dp (N, R) of sum_k outer(k) P^N(k), ``outer`` (N + 1, R), row by row
    (:func:`_row_gradient`)."""
    n, rows = p.shape
    adjoint = outer.copy()
    gradient = np.zeros((n, rows))
    for row in range(rows):
        _row_gradient(p[:, row], pmfs[:, :, row], adjoint[:, row], gradient[:, row])
    return gradient


@njit(cache=True)
def tail_and_jacobian(
    probs: np.ndarray, tau: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float, float, bool]:
    """P(z >= tau) (R,) in the dtype of ``probs`` (R, N, float32 or float64) and its derivative
    in every probability (R, N), both computed in float64. Each row's tail depends on that row
    only, so the backward pass is the incoming gradient times this Jacobian row; computing it
    here, in the call that has every intermediate pmf at hand, leaves the backward one
    multiplication. The tail sums the masses k >= tau in ascending k (exactly 1 where tau <= 0,
    exactly 0 past N), as :class:`avvp.poisson_binomial._RecursionTail` does. Also returns the
    least and largest probability and whether one is NaN: the range check of the other paths."""
    rows, n = probs.shape
    tails = np.empty(rows, probs.dtype)
    jacobian = np.zeros((rows, n))
    # One row at a time in scratch that stays in the L1 cache.
    pmfs = np.empty((n + 1, n + 2))
    adjoint = np.empty(n + 1)
    low, high, has_nan = np.inf, -np.inf, False
    for row in range(rows):
        for step in range(n):
            value = np.float64(probs[row, step])
            low, high = min(low, value), max(high, value)
            has_nan |= np.isnan(value)
        _row_pmfs(probs[row], pmfs)
        if tau[row] <= 0:
            tails[row] = 1.0  # and a zero Jacobian row
            continue
        total = 0.0
        adjoint[:] = 0.0
        for k in range(tau[row], n + 1):
            total += pmfs[n, k + 1]
            adjoint[k] = 1.0
        tails[row] = total
        _row_gradient(probs[row], pmfs, adjoint, jacobian[row])
    return tails, jacobian, low, high, has_nan
