"""Privacy spent by central differential privacy with fixed clipping (client-level).

Flower's ``DifferentialPrivacyServerSideFixedClipping`` clips every site's update to L2 norm
``C`` and adds Gaussian noise of standard deviation ``z * C / n`` to the mean of ``n`` updates,
i.e. noise ``z * C`` on the sum, whose sensitivity to adding or removing one site is ``C``.
Every round with all sites taking part is then a Gaussian mechanism with noise multiplier ``z``;
``T`` of them compose exactly into ``mu``-Gaussian DP with ``mu = sqrt(T) / z`` (Dong, Roth and
Su 2019), whose tight (epsilon, delta) curve is
``delta(eps) = Phi(-eps/mu + mu/2) - exp(eps) Phi(-eps/mu - mu/2)`` (Balle and Wang 2018).
The epsilon reported is that curve solved for the given delta (no subsampling amplification is
claimed: every site trains every round).
"""

from __future__ import annotations

import math


def gdp_delta(epsilon: float, mu: float) -> float:
    """The delta at which a ``mu``-GDP mechanism is (epsilon, delta)-DP."""
    from scipy.stats import norm

    # exp(eps) * Phi(b) computed in log space: exp(eps) alone overflows for large epsilon
    second = math.exp(min(700.0, epsilon + float(norm.logcdf(-epsilon / mu - mu / 2))))
    return float(norm.cdf(-epsilon / mu + mu / 2) - second)


def effective_noise_multiplier(noise_multiplier: float, n_sampled: int, max_weight: float) -> float:
    """Noise multiplier relative to the real sensitivity of a weighted aggregate.

    Flower's wrapper adds noise of std ``z * C / n_sampled``; if one site weighs ``max_weight``
    in the aggregate (``1 / n`` for a plain mean, more for example-weighted FedAvg or for
    Algorithm 1's small clusters), that site moves the aggregate by up to ``C * max_weight``,
    so the mechanism's multiplier is ``z / (n_sampled * max_weight)``.
    """
    if max_weight <= 0 or n_sampled <= 0:
        raise ValueError("max_weight and n_sampled must be positive")
    return noise_multiplier / (n_sampled * max_weight)


def composed_epsilon(noise_multipliers: list[float], delta: float = 1e-5) -> float:
    """Epsilon of several Gaussian releases with different multipliers (mu^2 = sum 1/z^2)."""
    if not noise_multipliers:
        return 0.0
    if min(noise_multipliers) <= 0:
        return math.inf
    mu = math.sqrt(sum(1.0 / z**2 for z in noise_multipliers))
    return gaussian_epsilon(1.0 / mu, 1, delta)


def gaussian_epsilon(noise_multiplier: float, rounds: int, delta: float = 1e-5) -> float:
    """Epsilon spent after ``rounds`` Gaussian releases with ``noise_multiplier`` at ``delta``.

    Returns ``inf`` for zero noise and 0 for zero rounds.

    Raises
    ------
    ValueError
        For a negative noise multiplier or round count, or delta outside (0, 1).
    """
    from scipy.optimize import brentq

    if noise_multiplier < 0 or rounds < 0:
        raise ValueError("noise_multiplier and rounds must be >= 0")
    if not 0.0 < delta < 1.0:
        raise ValueError("delta must be in (0, 1)")
    if rounds == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    mu = math.sqrt(rounds) / noise_multiplier
    if gdp_delta(0.0, mu) <= delta:
        return 0.0
    hi = 1.0
    while gdp_delta(hi, mu) > delta:
        hi *= 2.0
        if hi > 1e7:  # no meaningful guarantee
            return math.inf
    return float(brentq(lambda e: gdp_delta(e, mu) - delta, 0.0, hi, xtol=1e-10))
