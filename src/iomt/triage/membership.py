"""Membership functions of the rule set's terms, as vectorised piecewise-linear shapes.

Every term is a trapezoid written as ``clip(min(s1 * x + o1, s2 * x + o2), 0, 1)``: a rising
edge and a falling edge (a shoulder has slope 0 and offset 1 on its open side). Adjacent terms
cross linearly over ``boundary +- transition`` (membership 0.5 at the boundary), so a type-1
input is a Ruspini partition. For interval type-2 sets the boundary itself is uncertain by
``+- fou``: the upper membership function (UMF) uses the boundary that widens the term, the
lower one (LMF) the boundary that narrows it; a narrow term's LMF becomes a triangle lower
than 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from iomt.triage.ruleset import InputSpec, VerdictSpec


@dataclass(frozen=True)
class LinearTerms:
    """Edges of K trapezoids: membership = clip(min(s1*x + o1, s2*x + o2), 0, 1)."""

    s1: np.ndarray
    o1: np.ndarray
    s2: np.ndarray
    o2: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Membership of every value in ``x`` (any shape) in each term: shape ``x.shape + (K,)``."""
        xe = np.asarray(x, dtype=float)[..., None]
        rise = xe * self.s1 + self.o1
        fall = xe * self.s2 + self.o2
        return np.clip(np.minimum(rise, fall), 0.0, 1.0)

    @property
    def rise_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Where each rising edge leaves 0 and reaches 1 (NaN for a left shoulder)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            start = np.where(self.s1 != 0, -self.o1 / self.s1, np.nan)
            stop = np.where(self.s1 != 0, (1.0 - self.o1) / self.s1, np.nan)
        return start, stop

    @property
    def fall_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Where each falling edge leaves 1 and reaches 0 (NaN for a right shoulder)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            start = np.where(self.s2 != 0, (1.0 - self.o2) / self.s2, np.nan)
            stop = np.where(self.s2 != 0, -self.o2 / self.s2, np.nan)
        return start, stop


def _edges(order: np.ndarray, cuts: np.ndarray, transition: float, widen: float) -> LinearTerms:
    """Trapezoid edges for terms laid out along an axis (``order``) with boundaries ``cuts``."""
    k = len(order)
    s1, o1, s2, o2 = (np.zeros(k), np.ones(k), np.zeros(k), np.ones(k))
    width = 2.0 * transition
    for pos, term in enumerate(order):
        if pos > 0:  # rising edge around the left boundary, moved outwards by ``widen``
            left = cuts[pos - 1] - widen - transition
            s1[term], o1[term] = 1.0 / width, -left / width
        if pos < k - 1:  # falling edge around the right boundary
            right = cuts[pos] + widen + transition
            s2[term], o2[term] = -1.0 / width, right / width
    return LinearTerms(s1=s1, o1=o1, s2=s2, o2=o2)


def input_terms(spec: InputSpec, widen: float = 0.0) -> LinearTerms:
    """Membership functions of an input's terms, in severity order.

    ``widen`` moves every inner boundary outwards from each term (``+fou`` gives the UMF,
    ``-fou`` the LMF, 0 the type-1 set).
    """
    order, cuts = spec.boundaries()
    return _edges(order, cuts, spec.transition, widen)


def verdict_terms(spec: VerdictSpec, widen: float = 0.0) -> LinearTerms:
    """Membership functions of the verdict categories (normal ... critical)."""
    order = np.arange(len(spec.terms))
    cuts = spec.upper_bounds
    return _edges(order, cuts, spec.transition, widen)
