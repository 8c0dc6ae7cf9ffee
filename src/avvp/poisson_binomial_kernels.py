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
def recursion_steps(p: np.ndarray, pmfs: np.ndarray) -> None:
    """Fill ``pmfs`` with every intermediate pmf P^0 .. P^N of the Bernoullis ``p``."""
    n, rows = p.shape
    pmfs[0, :, :] = 0.0
    pmfs[0, 1, :] = 1.0
    for step in range(n):
        pmfs[step + 1, 0, :] = 0.0
        for k in range(1, n + 2):
            for row in range(rows):
                success = p[step, row]
                pmfs[step + 1, k, row] = (
                    pmfs[step, k, row] * (1.0 - success) + pmfs[step, k - 1, row] * success
                )


@njit(cache=True)
def recursion_gradient(p: np.ndarray, pmfs: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """d/dp (N, R) of sum_k outer(k) P^N(k), ``outer`` (N + 1, R): the recursion's adjoint
    A^{n-1}(k) = A^n(k) + p_n (A^n(k+1) - A^n(k)) and d/dp_n = sum_k P^{n-1}(k) (A^n(k+1) -
    A^n(k)), as in :func:`avvp.poisson_binomial._recursion_gradient`. The adjoint is updated in
    place, k ascending: A^{n-1}(k) needs A^n(k + 1), which is overwritten only after."""
    n, rows = p.shape
    adjoint = outer.copy()
    gradient = np.zeros((n, rows))
    for step in range(n, 0, -1):
        for k in range(n):
            for row in range(rows):
                difference = adjoint[k + 1, row] - adjoint[k, row]
                gradient[step - 1, row] += pmfs[step - 1, k + 1, row] * difference
                adjoint[k, row] += difference * p[step - 1, row]
    return gradient
