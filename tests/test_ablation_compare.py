"""Comparing variants: the paired test over seeds against a hand computation, and scaling fits that recover known
curves and say from which size two of them part by more than a margin."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.ablation.compare import ScalingFit, compare_to_baseline, fit_scaling, size_to_separate


def test_the_paired_test_over_seeds_is_students_by_hand():
    """Differences 0.10, 0.12, 0.08 (variant minus baseline, seed by seed): mean 0.10, sample sd 0.02, t = 0.10 /
    (0.02 / sqrt 3) = 8.66 with 2 degrees of freedom; two-sided p = 1 - |t| / sqrt(t^2 + 2) (Student's t with 2
    degrees of freedom has that closed form) = 0.01307."""
    losses = {"base": {0: 3.00, 1: 3.10, 2: 2.95}, "strict": {0: 3.10, 1: 3.22, 2: 3.03}}
    base, strict = compare_to_baseline(losses, "base")
    t = 0.10 / (0.02 / math.sqrt(3))
    assert strict.difference == pytest.approx(0.10) and strict.p_value == pytest.approx(1 - t / math.sqrt(t * t + 2),
                                                                                       rel=1e-6)
    assert strict.mean == pytest.approx(np.mean([3.10, 3.22, 3.03])) and strict.std == pytest.approx(
        np.std([3.10, 3.22, 3.03], ddof=1))
    assert (base.difference, math.isnan(base.p_value)) == (0.0, True)


def test_a_difference_within_the_seed_noise_is_not_significant():
    losses = {"base": {0: 3.00, 1: 3.10, 2: 2.95}, "same": {0: 3.02, 1: 3.07, 2: 2.97}}
    assert compare_to_baseline(losses, "base")[1].p_value > 0.5


@pytest.mark.parametrize("truth", [ScalingFit(1.8, 40.0, 0.3), ScalingFit(2.5, 900.0, 0.6)])
def test_a_fit_recovers_a_known_curve_from_three_sizes(truth):
    sizes = [1e5, 1e6, 1e7]
    fitted = fit_scaling(sizes, truth.loss(np.array(sizes)))
    assert fitted.loss(1e9) == pytest.approx(truth.loss(1e9), rel=1e-4)
    assert (fitted.irreducible, fitted.exponent) == (pytest.approx(truth.irreducible, rel=1e-3),
                                                     pytest.approx(truth.exponent, rel=1e-3))


def test_curves_that_part_with_scale_are_found_apart_where_they_differ_by_the_margin():
    """Same loss at 1e6 parameters, but one falls faster: they differ by 0.05 further up, not below."""
    slow = ScalingFit(2.0, 10.0, 0.2)
    fast = ScalingFit(1.9, (slow.loss(1e6) - 1.9) * 1e6 ** 0.3, 0.3)
    found = size_to_separate(slow, fast, 0.05, sizes=[1e4, 1e5, 1e6])
    assert found is not None and found > 1e6
    assert abs(slow.loss(found) - fast.loss(found)) > 0.05 >= abs(slow.loss(found / 1.1) - fast.loss(found / 1.1))
    assert size_to_separate(slow, slow, 0.05, sizes=[1e6]) is None
    with pytest.raises(ValueError, match="at least 3 sizes"):
        fit_scaling([1e5, 1e6], [3.0, 2.9])
