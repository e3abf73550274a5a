"""Aggregation and defuzzification over the discretised output universe, for a batch.

Type-1 (:class:`ClippedCentroid`)
    The aggregated set is ``agg(y) = max_c min(F_c, MF_c(y))`` for the consequent terms ``c``
    and the strongest firing ``F_c`` among the rules concluding ``c``. Its centroid is that of
    the piecewise-linear curve through the universe's grid points plus the points where each
    term's MF crosses its own cut ``F_c`` (the definition scikit-fuzzy's ``ControlSystem``
    uses, so both agree to rounding error). Grid columns where a single term has membership
    1 and the others 0 contribute ``F_c`` times a constant, so only the few "mixed" columns
    in the crossovers are evaluated per window.

Interval type-2 (:func:`km_centroid`)
    Karnik-Mendel type reduction of the aggregated upper and lower sets on the grid, computed
    exactly by enumerating every switch point with cumulative sums (vectorised), then the
    midpoint of ``[y_l, y_r]``.
"""

from __future__ import annotations

import numpy as np

from iomt.triage.membership import LinearTerms


def _segment(
    x1: np.ndarray, g1: np.ndarray, x2: np.ndarray, g2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Area and first moment of the linear pieces from ``(x1, g1)`` to ``(x2, g2)``."""
    width = x2 - x1
    area = 0.5 * width * (g1 + g2)
    moment = width / 6.0 * (x1 * (2.0 * g1 + g2) + x2 * (g1 + 2.0 * g2))
    return area, moment


class ClippedCentroid:
    """Type-1 Mamdani aggregation (min implication, max aggregation) and centroid.

    Parameters
    ----------
    terms
        The consequent terms' membership functions.
    universe
        Ascending, evenly spaced output grid.
    """

    def __init__(self, terms: LinearTerms, universe: np.ndarray) -> None:
        self.terms = terms
        self.y = np.asarray(universe, dtype=float)
        self.step = float(self.y[1] - self.y[0])
        mf = terms(self.y).T  # (C, U)
        self._mf = mf
        # Trapezoid-rule weights of each grid point in the area and moment integrals.
        d = self.step
        area_w = np.full(len(self.y), d)
        area_w[0] = area_w[-1] = d / 2
        mom_w = np.zeros(len(self.y))
        mom_w[1:] += d / 6 * (self.y[:-1] + 2 * self.y[1:])
        mom_w[:-1] += d / 6 * (2 * self.y[:-1] + self.y[1:])
        plain = ((mf == 1.0) | (mf == 0.0)).all(axis=0) & ((mf == 1.0).sum(axis=0) == 1)
        owner = np.argmax(mf, axis=0)
        c = mf.shape[0]
        self._plain_area = np.array([area_w[plain & (owner == k)].sum() for k in range(c)])
        self._plain_mom = np.array([mom_w[plain & (owner == k)].sum() for k in range(c)])
        mixed = ~plain & (mf > 0).any(axis=0)
        self._mixed_mf = mf[:, mixed]  # (C, M)
        self._mixed_area = area_w[mixed]
        self._mixed_mom = mom_w[mixed]
        # The sloped edges (shoulders have none): term, start, stop, rising.
        rs, rt = terms.rise_bounds
        fs, ft = terms.fall_bounds
        has_rise, has_fall = ~np.isnan(rs), ~np.isnan(fs)
        self._cut_term = np.concatenate([np.flatnonzero(has_rise), np.flatnonzero(has_fall)])
        self._cut_start = np.concatenate([rs[has_rise], fs[has_fall]])
        self._cut_stop = np.concatenate([rt[has_rise], ft[has_fall]])
        self._cut_rising = np.concatenate([np.ones(has_rise.sum()), np.zeros(has_fall.sum())])

    def aggregate_at(self, strengths: np.ndarray, points: np.ndarray) -> np.ndarray:
        """``agg`` at per-window points: strengths (N, C), points (N, P) -> (N, P)."""
        mf = self.terms(points)  # (N, P, C)
        return np.minimum(mf, strengths[:, None, :]).max(axis=2)

    def _cut_points(self, strengths: np.ndarray) -> np.ndarray:
        """Where each sloped edge crosses its term's cut (N, edges), clipped to the universe."""
        f = strengths[:, self._cut_term]
        # rising edge: MF = (x - start) / (stop - start); falling: 1 - that
        frac = np.where(self._cut_rising > 0, f, 1.0 - f)
        p = self._cut_start + frac * (self._cut_stop - self._cut_start)
        return np.clip(p, self.y[0], self.y[-1])

    def __call__(self, strengths: np.ndarray) -> np.ndarray:
        """Centroid of the aggregated set for firing strengths per consequent (N, C)."""
        f = np.asarray(strengths, dtype=float)
        mixed = np.minimum(f[:, :, None], self._mixed_mf[None, :, :]).max(axis=1)  # (N, M)
        area = f @ self._plain_area + mixed @ self._mixed_area
        moment = f @ self._plain_mom + mixed @ self._mixed_mom
        d_area, d_mom = self._cut_corrections(f)
        area = area + d_area
        moment = moment + d_mom
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(area > 0, moment / area, np.nan)

    def _cut_corrections(self, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Change of area and moment from splitting grid segments at the cut points."""
        y0, n_seg = self.y[0], len(self.y) - 1
        p = np.sort(self._cut_points(f), axis=1)  # (N, P)
        j = np.clip(np.floor((p - y0) / self.step).astype(np.intp), 0, n_seg - 1)
        a = self.y[j]
        b = self.y[j + 1]
        g = self.aggregate_at(f, np.concatenate([a, p, b], axis=1))
        ga, gp, gb = np.split(g, 3, axis=1)
        same_prev = np.zeros_like(p, dtype=bool)
        same_prev[:, 1:] = j[:, 1:] == j[:, :-1]
        last = np.ones_like(p, dtype=bool)
        last[:, :-1] = ~same_prev[:, 1:]
        left_x = a.copy()
        left_g = ga.copy()
        left_x[:, 1:] = np.where(same_prev[:, 1:], p[:, :-1], a[:, 1:])
        left_g[:, 1:] = np.where(same_prev[:, 1:], gp[:, :-1], ga[:, 1:])
        ar1, mo1 = _segment(left_x, left_g, p, gp)
        ar2, mo2 = _segment(p, gp, b, gb)
        ar0, mo0 = _segment(a, ga, b, gb)
        d_area = ar1.sum(1) + np.where(last, ar2, 0).sum(1) - np.where(~same_prev, ar0, 0).sum(1)
        d_mom = mo1.sum(1) + np.where(last, mo2, 0).sum(1) - np.where(~same_prev, mo0, 0).sum(1)
        return d_area, d_mom


class GridAggregator:
    """``max_c min(F_c, MF_c(y))`` on the grid for fixed MFs (C, U), evaluating only the
    columns where terms overlap.

    A column where one term has membership 1 and the others 0 is that term's strength; a
    column where all are 0 stays 0; only the remaining ("mixed") columns need the min/max.
    """

    def __init__(self, mf: np.ndarray) -> None:
        self.mf = np.asarray(mf, dtype=float)
        ones = self.mf == 1.0
        plain = ((ones | (self.mf == 0.0)).all(axis=0)) & (ones.sum(axis=0) == 1)
        empty = (self.mf == 0.0).all(axis=0)
        # gather index per column: the owner term, or an extra all-zero column
        c = self.mf.shape[0]
        self._owner = np.where(plain, np.argmax(ones, axis=0), c)
        self._mixed = np.flatnonzero(~plain & ~empty)
        self._mixed_mf = self.mf[:, self._mixed]

    def __call__(self, strengths: np.ndarray) -> np.ndarray:
        """Aggregated membership on the grid, (N, C) -> (N, U)."""
        f = np.concatenate([strengths, np.zeros((strengths.shape[0], 1))], axis=1)
        out = f[:, self._owner]
        out[:, self._mixed] = np.minimum(strengths[:, :, None], self._mixed_mf[None]).max(axis=1)
        return out


def km_centroid(
    y: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact Karnik-Mendel centroid interval ``(y_l, y_r)`` of discretised IT2 sets.

    Parameters
    ----------
    y
        Ascending grid (U,).
    lower, upper
        Lower and upper membership on the grid, (N, U), ``lower <= upper``.

    Notes
    -----
    ``y_l`` is the minimum over switch points k of the centroid that uses the upper
    membership left of k and the lower one from k on; ``y_r`` the maximum with the roles
    swapped. Enumerating all U + 1 switch points with prefix sums gives the same switch point
    the iterative KM algorithm converges to. Rows whose upper set is empty give NaN.
    """
    n = lower.shape[0]
    # Moving the switch point past column i adds (upper_i - lower_i) to the left sum.
    diff = upper - lower
    cd = np.concatenate([np.zeros((n, 1)), np.cumsum(diff, axis=1)], axis=1)
    cdy = np.concatenate([np.zeros((n, 1)), np.cumsum(diff * y, axis=1)], axis=1)
    sum_l = lower.sum(axis=1, keepdims=True)
    sum_u = upper.sum(axis=1, keepdims=True)
    sum_ly = lower @ y
    sum_uy = upper @ y
    den_l = sum_l + cd  # upper left of k, lower from k on
    num_l = sum_ly[:, None] + cdy
    den_r = sum_u - cd  # lower left of k, upper from k on
    num_r = sum_uy[:, None] - cdy
    if (sum_l > 0).all():  # every denominator is positive
        yl = (num_l / den_l).min(axis=1)
        yr = (num_r / den_r).max(axis=1)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            yl = np.where(den_l > 1e-300, num_l / den_l, np.inf).min(axis=1)
            yr = np.where(den_r > 1e-300, num_r / den_r, -np.inf).max(axis=1)
    empty = ~(upper > 0).any(axis=1)
    yl = np.where(empty | ~np.isfinite(yl), np.nan, yl)
    yr = np.where(empty | ~np.isfinite(yr), np.nan, yr)
    return yl, yr
