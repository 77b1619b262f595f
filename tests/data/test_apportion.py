"""Group quotas of a block (`sampling._apportion`): integers summing to the block, at least one
per group, and as close to p·total as integers can be (least squares) — checked against every composition."""

import itertools

import numpy as np
import pytest

from twofold.data.sampling import _apportion


def least_squares(p: np.ndarray, total: int) -> float:
    """The smallest Σ(q − p·total)² over all integer q >= 1 with Σq = total (brute force)."""
    exact = p * total
    return min(np.square(np.array(q) - exact).sum()
               for q in itertools.product(range(1, total + 1), repeat=len(p)) if sum(q) == total)


def test_quotas_are_the_closest_integers_with_one_for_every_group():
    rng = np.random.default_rng(0)
    for trial in range(300):
        groups = int(rng.integers(2, 5))
        total = int(rng.integers(groups, 11))
        # sparse draws give groups below one quota (raised to 1, paid for by the others)
        p = rng.dirichlet(np.full(groups, 0.3 if trial % 2 else 1.0))
        quotas = _apportion(p, total)
        assert quotas.sum() == total and quotas.min() >= 1, (p, total, quotas)
        error = np.square(quotas - p * total).sum()
        assert error == pytest.approx(least_squares(p, total), abs=1e-9), (p, total, quotas)


@pytest.mark.parametrize(("p", "total", "expected"), [
    ([0.05, 0.05, 0.9], 4, [1, 1, 2]),  # the rare groups' minimum is taken from the largest
    ([0.6, 0.3, 0.1], 10, [6, 3, 1]),   # exact
    ([0.45, 0.45, 0.1], 5, [2, 2, 1]),  # 2.25, 2.25, 0.5 -> the rare group rounds up to 1
    # raising three 0.4s to 1 costs one quota: taken from 3.3 (-> 2), not 5.5 (-> 4), the smaller squared error
    ([0.04, 0.04, 0.04, 0.55, 0.33], 10, [1, 1, 1, 5, 2]),
])
def test_quotas_of_known_cases(p, total, expected):
    assert _apportion(np.array(p), total).tolist() == expected
