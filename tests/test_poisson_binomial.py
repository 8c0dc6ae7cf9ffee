"""The Poisson-binomial pmf, tail and mode against naive references (SPEC section 5).

References: brute-force enumeration of all 2^N outcomes (N <= 16), a pure-Python float64
recursion (N up to 1000) and exact rational arithmetic (``fractions``, N <= 100).

Measured accuracy (float64, seeds as below): the recursion is *relatively* exact to about N
float64 epsilons on every mass, down to 1e-250 (worst 1.4e-15 against exact rationals at
N <= 100). The paper's DFT form is exact only *absolutely*: its worst error was 2.3e-15 at N <= 100
and 1.8e-15 at N = 200 and 1000, so it meets the SPEC's 1e-9 everywhere tested; but masses below
~1e-15 come out as rounding noise (relative errors up to 1e+227 seen), which is where it genuinely
loses precision. The tight bounds below (``DFT_ATOL``, ``recursion_rtol``) leave a margin of 40x
or more over what was measured.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from fractions import Fraction

import pytest
import torch

from avvp.poisson_binomial import (
    most_likely_count,
    poisson_binomial_pmf,
    poisson_binomial_tail,
)

METHODS = ("recursion", "dft")
SPEC_ATOL = 1e-9  # SPEC section 5: match brute force to 1e-9
DFT_ATOL = 1e-13  # measured worst absolute error 2.3e-15 (module docstring)
EPS = torch.finfo(torch.float64).eps


def recursion_rtol(n: int) -> float:
    """A relative bound for the recursion: a few roundings per Bernoulli on every mass."""
    return 3 * max(n, 1) * EPS


# ---- references


def brute_force_pmf(probs: torch.Tensor) -> torch.Tensor:
    """pmf of one (N,) float64 vector by summing the probability of every outcome."""
    n = len(probs)
    outcomes = torch.tensor(list(itertools.product((0, 1), repeat=n)), dtype=torch.bool)
    outcomes = outcomes.reshape(2**n, n)
    weights = torch.where(outcomes, probs, 1 - probs).prod(dim=1)
    counts = outcomes.sum(dim=1)
    return torch.zeros(n + 1, dtype=torch.float64).index_add_(0, counts, weights)


def python_recursion(probs: list[float]) -> list[float]:
    """The textbook recursion in plain Python floats, one Bernoulli at a time."""
    pmf = [1.0]
    for p in probs:
        pmf = [a * (1 - p) + b * p for a, b in zip([*pmf, 0.0], [0.0, *pmf], strict=True)]
    return pmf


def exact_pmf(probs: list[float]) -> list[float]:
    """The pmf in exact rational arithmetic (floats are dyadic rationals), rounded once."""
    pmf = [Fraction(1)]
    for p in map(Fraction, probs):
        pmf = [a * (1 - p) + b * p for a, b in zip([*pmf, 0], [0, *pmf], strict=True)]
    return [float(x) for x in pmf]


def probability_vectors(n: int, seed: int, count: int = 12) -> list[torch.Tensor]:
    """Random vectors of length n: uniform, squashed to the ends, with exact 0s and 1s."""
    generator = torch.Generator().manual_seed(seed)
    vectors = []
    for i in range(count):
        p = torch.rand(n, generator=generator, dtype=torch.float64)
        kind = i % 6
        if kind == 1:
            p = p * 0.01
        elif kind == 2:
            p = 1 - p * 0.01
        elif kind == 3:
            p[torch.rand(n, generator=generator) < 0.3] = 0.0
            p[torch.rand(n, generator=generator) < 0.3] = 1.0
        elif kind == 4:
            p = p**4
        elif kind == 5:
            p = torch.randint(0, 3, (n,), generator=generator).to(torch.float64) / 2  # 0, 1/2, 1
        vectors.append(p)
    vectors += [torch.zeros(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64)]
    return vectors


# ---- pmf


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 11, 16])
def test_pmf_matches_brute_force(method, n):
    vectors = probability_vectors(n, seed=n, count=12 if n < 16 else 6)
    got = poisson_binomial_pmf(torch.stack(vectors), method=method)
    assert got.shape == (len(vectors), n + 1)
    assert got.dtype == torch.float64
    for row, p in zip(got, vectors, strict=True):
        expected = brute_force_pmf(p)
        torch.testing.assert_close(row, expected, rtol=0, atol=SPEC_ATOL)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", [50, 200, 1000])
def test_pmf_matches_python_recursion(method, n):
    for p in probability_vectors(n, seed=100 + n, count=6):
        expected = torch.tensor(python_recursion(p.tolist()), dtype=torch.float64)
        got = poisson_binomial_pmf(p, method=method)
        torch.testing.assert_close(got, expected, rtol=0, atol=SPEC_ATOL)
        if method == "recursion":
            # Relative on every mass: both sides are within 3 N eps of the exact value. The atol
            # only covers subnormals, where float64 itself has no relative precision left.
            torch.testing.assert_close(got, expected, rtol=2 * recursion_rtol(n), atol=1e-290)
        else:
            torch.testing.assert_close(got, expected, rtol=0, atol=DFT_ATOL)


@pytest.mark.parametrize("n", [50, 100])
def test_pmf_against_exact_rationals(n):
    for p in probability_vectors(n, seed=200 + n, count=6):
        exact = torch.tensor(exact_pmf(p.tolist()), dtype=torch.float64)
        recursion = poisson_binomial_pmf(p, method="recursion")
        torch.testing.assert_close(recursion, exact, rtol=recursion_rtol(n), atol=1e-290)
        dft = poisson_binomial_pmf(p, method="dft")
        torch.testing.assert_close(dft, exact, rtol=0, atol=DFT_ATOL)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", [1, 7, 20, 100])
def test_pmf_is_a_distribution(method, n):
    generator = torch.Generator().manual_seed(n)
    probs = torch.rand(3, 4, n, generator=generator, dtype=torch.float64)
    probs[0, 0, 0] = 0.0
    probs[1, 2, -1] = 1.0
    pmf = poisson_binomial_pmf(probs, method=method)
    assert pmf.shape == (3, 4, n + 1)
    assert bool((pmf >= 0).all())
    torch.testing.assert_close(
        pmf.sum(-1), torch.ones(3, 4, dtype=torch.float64), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("method", METHODS)
def test_degenerate_probabilities_give_point_masses(method):
    # All 0 / all 1 / a mix of 0s and 1s: the count is certain, so the pmf is one-hot.
    p = torch.tensor([[0.0] * 6, [1.0] * 6, [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]], dtype=torch.float64)
    pmf = poisson_binomial_pmf(p, method=method)
    expected = torch.zeros(3, 7, dtype=torch.float64)
    expected[0, 0] = expected[1, 6] = expected[2, 3] = 1.0
    torch.testing.assert_close(pmf, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("method", METHODS)
def test_float32_large_n_is_float64_rounded_once(method):
    generator = torch.Generator().manual_seed(7)
    probs = torch.rand(2, 1000, generator=generator)
    probs[0, :100] = 0.0
    probs[1, :100] = 1.0
    got = poisson_binomial_pmf(probs, method=method)
    assert got.dtype == torch.float32
    assert bool(torch.isfinite(got).all())
    reference = torch.stack(
        [torch.tensor(python_recursion(p.double().tolist()), dtype=torch.float64) for p in probs]
    )
    # A float32 computation drifts by ~N float32 epsilons (1e-4 relative at N = 1000); computing
    # in float64 leaves one rounding to float32 (6e-8 relative) on the masses that matter.
    tolerance = 1e-12 if method == "dft" else 1e-38
    torch.testing.assert_close(got.double(), reference, rtol=1.2e-7, atol=tolerance)
    torch.testing.assert_close(got.sum(-1), torch.ones(2), rtol=0, atol=1e-6)


def test_methods_agree_on_a_batch_with_leading_dims():
    generator = torch.Generator().manual_seed(3)
    probs = torch.rand(2, 3, 5, 20, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(
        poisson_binomial_pmf(probs, "recursion"),
        poisson_binomial_pmf(probs, "dft"),
        rtol=0,
        atol=DFT_ATOL,
    )


# ---- gradients


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", [1, 4, 5])
def test_pmf_gradcheck(method, n):
    generator = torch.Generator().manual_seed(n)
    # Finite differences step 1e-6 either side, so stay inside [0, 1].
    probs = 0.05 + 0.9 * torch.rand(2, n, generator=generator, dtype=torch.float64)
    probs[0, 0] = 0.5  # with N + 1 even, the DFT has a factor that is exactly 0 here
    probs.requires_grad_()
    assert torch.autograd.gradcheck(lambda p: poisson_binomial_pmf(p, method), (probs,))


@pytest.mark.parametrize("method", METHODS)
def test_tail_gradcheck(method):
    generator = torch.Generator().manual_seed(11)
    probs = 0.05 + 0.9 * torch.rand(3, 2, 6, generator=generator, dtype=torch.float64)
    tau = torch.tensor([[-1, 0], [1, 3], [6, 7]])
    probs.requires_grad_()
    assert torch.autograd.gradcheck(lambda p: poisson_binomial_tail(p, tau, method), (probs,))


def leave_one_out_jacobian(probs: torch.Tensor) -> torch.Tensor:
    """d pmf(k) / d p_n = pmf_without_n(k - 1) - pmf_without_n(k), from brute force."""
    n = len(probs)
    jacobian = torch.zeros(n + 1, n, dtype=torch.float64)
    for i in range(n):
        rest = brute_force_pmf(torch.cat((probs[:i], probs[i + 1 :])))
        jacobian[1:, i] += rest
        jacobian[:-1, i] -= rest
    return jacobian


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gradients_at_exact_zeros_and_ones(method, dtype):
    p = torch.tensor([0.0, 1.0, 0.3, 1.0, 0.0, 0.5, 0.9], dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(
        lambda x: poisson_binomial_pmf(x, method), p.to(dtype)
    )
    assert bool(torch.isfinite(jacobian).all())
    atol = 1e-12 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(jacobian.double(), leave_one_out_jacobian(p), rtol=0, atol=atol)
    for x in (torch.zeros(5, dtype=dtype), torch.ones(5, dtype=dtype)):
        x.requires_grad_()
        poisson_binomial_tail(x, torch.tensor(2), method).backward()
        assert bool(torch.isfinite(x.grad).all())


# ---- tail


def brute_force_tail(probs: torch.Tensor, tau: int) -> float:
    return float(brute_force_pmf(probs)[max(tau, 0) :].sum())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", [0, 1, 4, 9])
def test_tail_matches_brute_force_for_every_tau(method, n):
    vectors = probability_vectors(n, seed=300 + n, count=6)
    probs = torch.stack(vectors)
    for tau in range(-1, n + 2):
        got = poisson_binomial_tail(probs, torch.full((len(vectors),), tau), method=method)
        assert got.shape == (len(vectors),)
        expected = torch.tensor([brute_force_tail(p, tau) for p in vectors], dtype=torch.float64)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
        if tau <= 0:
            assert bool((got == 1).all())
        if tau > n:
            assert bool((got == 0).all())


@pytest.mark.parametrize("method", METHODS)
def test_tail_broadcasts_tau(method):
    generator = torch.Generator().manual_seed(5)
    probs = torch.rand(4, 3, 8, generator=generator, dtype=torch.float64)
    tau = torch.tensor([0, 2, 5])  # per class, shared by the 4 videos
    got = poisson_binomial_tail(probs, tau, method=method)
    assert got.shape == (4, 3)
    for b, c in itertools.product(range(4), range(3)):
        assert float(got[b, c]) == pytest.approx(
            brute_force_tail(probs[b, c], int(tau[c])), abs=1e-12
        )
    scalar = poisson_binomial_tail(probs, torch.tensor(3), method=method)
    expected = poisson_binomial_tail(probs, torch.full((4, 3), 3), method=method)
    assert torch.equal(scalar, expected)


@pytest.mark.parametrize("method", METHODS)
def test_tail_at_tau_one_is_noisy_or(method):
    generator = torch.Generator().manual_seed(9)
    probs = torch.rand(4, 25, 20, generator=generator, dtype=torch.float64)
    probs[0, 0] = 0.0  # noisy-OR 0 exactly
    probs[1, 1, 3] = 1.0
    probs[2, 2] = 1e-6
    tail = poisson_binomial_tail(probs, torch.ones(4, 25, dtype=torch.long), method=method)
    noisy_or = 1 - torch.prod(1 - probs, dim=-1)
    torch.testing.assert_close(tail, noisy_or, rtol=0, atol=1e-12)
    if method == "recursion":
        assert float(tail[0, 0]) == 0.0  # (the DFT leaves ~1e-16 of rounding noise)


def test_small_tails_keep_relative_precision():
    # Negatives train towards P(z >= 1) -> 0; summing the pmf from the top keeps such tails
    # relatively exact, where 1 - P(z = 0) would leave only ~1e-16 / 2e-8 = 5e-9 of precision.
    probs = torch.full((3, 20), 1e-9, dtype=torch.float64)
    probs[1] = 1e-12
    probs[2, ::2] = 0.0
    tail = poisson_binomial_tail(probs, torch.tensor(1), method="recursion")
    exact = -torch.expm1(torch.log1p(-probs).sum(-1))
    torch.testing.assert_close(tail, exact, rtol=1e-13, atol=0)


@pytest.mark.parametrize("method", METHODS)
def test_tail_keeps_input_dtype(method):
    probs = torch.rand(2, 3, 10)
    got = poisson_binomial_tail(probs, torch.ones(2, 3, dtype=torch.long), method=method)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, 1 - torch.prod(1 - probs, dim=-1))


# ---- most likely count


@pytest.mark.parametrize("n", [1, 3, 6, 10, 14])
def test_most_likely_count_matches_brute_force(n):
    vectors = probability_vectors(n, seed=400 + n)
    counts = most_likely_count(torch.stack(vectors))
    assert counts.dtype == torch.long
    assert counts.shape == (len(vectors),)
    for p, count in zip(vectors, counts.tolist(), strict=True):
        pmf = brute_force_pmf(p)
        # Ties (e.g. all p = 1/2 with N odd) may break either way under rounding.
        assert float(pmf[count]) >= float(pmf.max()) - 1e-12
        top2 = pmf.topk(min(2, n + 1)).values
        if n == 0 or float(top2[0] - top2[-1]) > 1e-9:
            assert count == int(pmf.argmax())


def test_most_likely_count_minimum_and_shape():
    probs = torch.full((2, 3, 10), 0.01, dtype=torch.float64)
    probs[1, 2] = 0.95
    assert most_likely_count(probs).tolist() == [[0, 0, 0], [0, 0, 10]]
    assert most_likely_count(probs, minimum=1).tolist() == [[1, 1, 1], [1, 1, 10]]
    assert most_likely_count(probs.float(), minimum=1, method="dft").tolist() == [
        [1, 1, 1],
        [1, 1, 10],
    ]


# ---- errors and export


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([0.2, math.nan, 0.5], "NaN"),
        ([0.2, 1.5, 0.5], r"\[0, 1\].*1\.5"),
        ([-0.1, 0.5, 0.5], r"\[0, 1\].*-0\.1"),
        ([0.2, math.inf, 0.5], r"\[0, 1\]"),
    ],
)
@pytest.mark.parametrize("method", METHODS)
def test_bad_probabilities_are_rejected(values, message, method):
    probs = torch.tensor(values)
    with pytest.raises(ValueError, match=message):
        poisson_binomial_pmf(probs, method)
    with pytest.raises(ValueError, match=message):
        poisson_binomial_tail(probs, torch.tensor(1), method)
    with pytest.raises(ValueError, match=message):
        most_likely_count(probs, method=method)


def test_unknown_method_lists_the_choices():
    probs = torch.rand(5)
    with pytest.raises(ValueError, match=r"'fft'.*recursion, dft"):
        poisson_binomial_pmf(probs, method="fft")
    with pytest.raises(ValueError, match=r"recursion, dft"):
        poisson_binomial_tail(probs, torch.tensor(1), method="log")


def test_bad_types_are_rejected():
    with pytest.raises(TypeError, match="floating"):
        poisson_binomial_pmf(torch.tensor([0, 1, 1]))
    with pytest.raises(TypeError, match="integer"):
        poisson_binomial_tail(torch.rand(3), torch.tensor(1.0))
    with pytest.raises(ValueError, match="at least one dimension"):
        poisson_binomial_pmf(torch.tensor(0.5))


def test_package_level_export_is_lazy():
    import avvp

    assert avvp.poisson_binomial_pmf is poisson_binomial_pmf
    # torch is already imported here, so check laziness in a fresh interpreter.
    code = (
        "import sys, avvp; assert 'torch' not in sys.modules, 'import avvp imported torch'; "
        "from avvp import poisson_binomial_pmf; assert 'torch' in sys.modules; "
        "import avvp.poisson_binomial as m; assert poisson_binomial_pmf is m.poisson_binomial_pmf"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError, match="no_such_name"):
        avvp.no_such_name  # noqa: B018
