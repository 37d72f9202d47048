"""Comparing variants by the losses their models reach (issue 24): mean and spread over seeds, the difference to the
baseline with a paired test over seeds, and the scaling-law view.

- Seeds: each variant trains with the same seeds; seed s of a variant and seed s of the baseline share everything
  but the data (initialisation, batch order), so their differences are paired: Student's paired t-test over the
  seeds both have (two-sided; with 3 seeds a difference must be consistent to count).
- Scale: losses at 3 or more model sizes (or token budgets) N are fitted to L(N) = E + A / N^alpha (the form of
  Kaplan et al. and Hoffmann et al.), by least squares in log space of A and alpha with E below the smallest loss;
  two variants' fits say whether their difference grows or shrinks with scale and from which N it would exceed the
  seed spread.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from statistics import mean, stdev
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Comparison:
    """One variant against the baseline, over seeds."""

    variant: str
    seeds: int
    mean: float
    std: float  # sample standard deviation over seeds (0 for one seed)
    difference: float  # mean over common seeds of (variant - baseline); negative: the variant's loss is lower
    p_value: float  # paired two-sided t-test over common seeds; nan with fewer than 2 or identical differences


def compare_to_baseline(losses: dict[str, dict[int, float]], baseline: str) -> list[Comparison]:
    """Per variant (the baseline included, first), from {variant: {seed: loss}}."""
    from scipy import stats

    base = losses[baseline]
    rows = []
    for variant in [baseline, *(name for name in losses if name != baseline)]:
        values = losses[variant]
        common = sorted(set(values) & set(base))
        differences = [values[seed] - base[seed] for seed in common]
        p_value = float("nan")
        if len(differences) >= 2 and variant != baseline and len(set(differences)) > 1:
            p_value = float(stats.ttest_rel([values[seed] for seed in common], [base[seed] for seed in common]).pvalue)
        rows.append(Comparison(variant, len(values), mean(values.values()),
                               stdev(values.values()) if len(values) > 1 else 0.0,
                               mean(differences) if differences else float("nan"), p_value))
    return rows


@dataclass(frozen=True)
class ScalingFit:
    """L(N) = E + A / N^alpha."""

    irreducible: float  # E
    scale: float  # A
    exponent: float  # alpha

    def loss(self, size: float | np.ndarray) -> float | np.ndarray:
        return self.irreducible + self.scale / np.power(size, self.exponent)


def fit_scaling(sizes: Sequence[float], losses: Sequence[float]) -> ScalingFit:
    """The least-squares fit of L(N) = E + A / N^alpha to at least 3 (N, loss) points, losses falling with N."""
    from scipy.optimize import OptimizeWarning, curve_fit

    sizes_array, losses_array = np.asarray(sizes, dtype=float), np.asarray(losses, dtype=float)
    if len(sizes_array) < 3:
        raise ValueError(f"a scaling fit needs at least 3 sizes, got {len(sizes_array)}")
    lowest = float(losses_array.min())

    def curve(log_size, irreducible, log_scale, exponent):
        return irreducible + np.exp(log_scale - exponent * log_size)

    start = (lowest * 0.9, math.log(max(float(losses_array.max()) - lowest * 0.9, 1e-9)) + 0.3 * math.log(
        float(sizes_array.min())), 0.3)
    with warnings.catch_warnings():  # 3 points for 3 parameters leave no degrees of freedom for a covariance
        warnings.simplefilter("ignore", OptimizeWarning)
        parameters, _ = curve_fit(curve, np.log(sizes_array), losses_array, p0=start, maxfev=20_000,
                                  bounds=([0.0, -50.0, 1e-4], [lowest, 200.0, 5.0]))
    return ScalingFit(float(parameters[0]), float(math.exp(parameters[1])), float(parameters[2]))


def size_to_separate(first: ScalingFit, second: ScalingFit, margin: float, sizes: Sequence[float],
                     up_to: float = 1e12) -> float | None:
    """The smallest N from the largest of `sizes` up to `up_to` (on a log grid) at which the two fits differ by more
    than `margin` (e.g. the seed spread); None when they never do there."""
    grid = np.logspace(math.log10(max(sizes)), math.log10(up_to), 400)
    apart = np.abs(first.loss(grid) - second.loss(grid)) > margin
    return float(grid[np.argmax(apart)]) if apart.any() else None
