"""Rule sets as data: load a versioned rule-set file and generate its rule base.

A rule set (``rulesets/<name>.json``) holds, per input, the category ranges and weights of the
FLCD paper's Table 5, the verdict ranges of Table 6, and the membership-function shape
parameters (crossover half-width, footprint of uncertainty). The rules themselves are not
stored: :func:`generate_rules` enumerates every combination of input terms (4^4 x 2 = 512 for
``flcd-2021-v1``) and gives each one a consequent with the rule-output function.

Rule-output function ("weighted-sum")
-------------------------------------
The paper's Algorithm 3 is only an image, and its Table 7 is not consistent with one plain
weighted sum. We define: the consequent of a rule is the verdict category whose range
(Table 6, upper bound inclusive: normal [0, 4.2], mild (4.2, 6.2], serious (6.2, 10.3],
critical (10.3, 15.5]) contains the sum of the category weights (Table 5) of the rule's
antecedent terms. This is the paper's own reading of the verdict ranges ("the range of the
verdict value ... in which the sum of the weights of all symptoms lies"). It honours Table 7
rows 1, 2, 3, 256, 257, 258, 511, 512 and the worked example of section 4.2.3; it cannot
honour row 255 (``mcccn -> s``: the weights sum to 12.5, critical) nor row 510 (``ccchh``
is not a valid term string).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from iomt.errors import ValidationError

#: Verdict categories, in order of urgency (indices match ``iomt.domain.triage.TriageLevel``).
VERDICT_TERMS: tuple[str, ...] = ("normal", "mild", "serious", "critical")
#: Decimals kept when comparing weight sums with verdict bounds (6.2 must stay 6.2).
_SUM_DECIMALS = 9


@dataclass(frozen=True)
class InputSpec:
    """One input variable: its terms (in the file's order), ranges, weights and MF shape.

    Attributes
    ----------
    name
        Column name (``temperature``, ``resp_rate``, ``heart_rate``, ``spo2``,
        ``social_contact``).
    label
        The paper's short name (``temp``, ``rr``, ...), used in rule strings.
    unit
        Canonical unit of the aggregated value.
    terms
        Term names in severity order (normal first).
    ranges
        ``(low, high)`` per term, in the same order.
    weights
        Category weight per term (Table 5).
    transition
        Half-width of the linear crossover at each boundary.
    fou
        Half-width of the boundary uncertainty for the interval type-2 sets.
    """

    name: str
    label: str
    unit: str
    terms: tuple[str, ...]
    ranges: tuple[tuple[float, float], ...]
    weights: tuple[float, ...]
    transition: float
    fou: float

    @property
    def total_weight(self) -> float:
        """The feature weight of Table 4/5: the sum of the category weights."""
        return float(sum(self.weights))

    def boundaries(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(order, cuts)``: terms sorted along the axis and the cut points between them.

        ``order[j]`` is the index (in severity order) of the j-th term from the low end of the
        axis; ``cuts[j]`` is the boundary between ``order[j]`` and ``order[j + 1]``.
        """
        lows = np.array([lo for lo, _ in self.ranges])
        order = np.argsort(lows, kind="stable")
        cuts = np.array([self.ranges[order[j]][1] for j in range(len(order) - 1)])
        return order, cuts


@dataclass(frozen=True)
class VerdictSpec:
    """The output variable: verdict ranges (Table 6) and its discretised universe."""

    terms: tuple[str, ...]
    ranges: tuple[tuple[float, float], ...]
    transition: float
    fou: float
    step: float

    @property
    def upper_bounds(self) -> np.ndarray:
        """Upper bound of every category but the last (the decision thresholds)."""
        return np.array([hi for _, hi in self.ranges[:-1]])

    def universe(self) -> np.ndarray:
        """Discretised output universe from the lowest to the highest range bound."""
        lo, hi = self.ranges[0][0], self.ranges[-1][1]
        count = round((hi - lo) / self.step) + 1
        return np.linspace(lo, hi, count)


@dataclass(frozen=True)
class RuleBase:
    """The generated rules.

    ``antecedents[r, i]`` is the term index (severity order) of input ``i`` in rule ``r``;
    ``consequents[r]`` the verdict category; ``scores[r]`` the weight sum behind it.
    """

    antecedents: np.ndarray
    consequents: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.antecedents.shape[0])


@dataclass(frozen=True)
class Ruleset:
    """A loaded rule set (see the module docstring)."""

    name: str
    inputs: tuple[InputSpec, ...]
    verdict: VerdictSpec
    normalisation: str = "per-input"
    rule_output: str = "weighted-sum"

    @property
    def input_names(self) -> list[str]:
        """Column order of the engine's input matrix."""
        return [spec.name for spec in self.inputs]

    @property
    def feature_weights(self) -> np.ndarray:
        """Total weight per input (Table 4/5 ``w(x)``)."""
        return np.array([spec.total_weight for spec in self.inputs])

    @cached_property
    def rules(self) -> RuleBase:
        """The generated rule base (computed once per rule set)."""
        return generate_rules(self)

    def with_feature_weights(self, weights: Sequence[float]) -> Ruleset:
        """Return a copy whose category weights are rescaled to new feature totals.

        Category weights keep their proportions within a feature (Algorithm 2's split).
        The verdict ranges are recomputed the paper's way: the upper bound of mild,
        serious and critical is the sum over features of that category's weight (a
        two-term input contributes its non-normal weight to each), and the normal upper
        bound keeps its ratio to the mild one (4.2 / 6.2 in ``flcd-2021-v1``).
        """
        new_w = np.asarray(weights, dtype=float)
        if new_w.shape != (len(self.inputs),) or np.any(new_w < 0) or not np.any(new_w > 0):
            raise ValidationError(f"need {len(self.inputs)} non-negative weights, got {weights}")
        inputs = []
        for spec, total in zip(self.inputs, new_w, strict=True):
            scale = total / spec.total_weight if spec.total_weight > 0 else 0.0
            inputs.append(replace(spec, weights=tuple(w * scale for w in spec.weights)))
        sums = [0.0] * len(VERDICT_TERMS)
        for spec in inputs:
            per_cat = _weights_per_category(spec)
            sums = [s + w for s, w in zip(sums, per_cat, strict=True)]
        old = self.verdict.ranges
        normal_hi = old[0][1] / old[1][1] * sums[1]
        bounds = [old[0][0], normal_hi, sums[1], sums[2], sums[3]]
        if any(b2 <= b1 for b1, b2 in itertools.pairwise(bounds)):
            raise ValidationError(f"weights {weights} give non-increasing verdict bounds {bounds}")
        scale_out = (bounds[-1] - bounds[0]) / (old[-1][1] - old[0][0])
        verdict = replace(
            self.verdict,
            ranges=tuple((bounds[k], bounds[k + 1]) for k in range(len(VERDICT_TERMS))),
            transition=self.verdict.transition * scale_out,
            fou=self.verdict.fou * scale_out,
            step=self.verdict.step * scale_out,
        )
        return replace(self, inputs=tuple(inputs), verdict=verdict)


def _weights_per_category(spec: InputSpec) -> list[float]:
    """Weight of ``spec`` for each verdict category (two-term inputs: normal vs the rest)."""
    if len(spec.terms) == len(VERDICT_TERMS):
        return list(spec.weights)
    if len(spec.terms) == 2:
        return [spec.weights[0]] + [spec.weights[1]] * (len(VERDICT_TERMS) - 1)
    raise ValidationError(f"input {spec.name} must have 2 or 4 terms")


def category_of(scores: np.ndarray, upper_bounds: np.ndarray) -> np.ndarray:
    """Verdict category of each score; category ranges are upper-bound inclusive.

    Scores are rounded to 9 decimals first, so a sum such as 1 + 2 + 0.2 + 2 + 1 stays in
    "mild" (upper bound 6.2) despite floating-point error.
    """
    rounded = np.round(np.asarray(scores, dtype=float), _SUM_DECIMALS)
    return np.searchsorted(np.round(upper_bounds, _SUM_DECIMALS), rounded, side="left")


def generate_rules(ruleset: Ruleset) -> RuleBase:
    """Enumerate every combination of input terms and give each rule its consequent.

    Rules are numbered like the paper's Table 7: inputs in file order, the last input
    varying fastest.
    """
    if ruleset.rule_output != "weighted-sum":
        raise ValidationError(f"unknown rule-output function {ruleset.rule_output!r}")
    sizes = [len(spec.terms) for spec in ruleset.inputs]
    grids = np.meshgrid(*[np.arange(n) for n in sizes], indexing="ij")
    antecedents = np.stack([g.ravel() for g in grids], axis=1)
    scores = np.zeros(len(antecedents))
    for i, spec in enumerate(ruleset.inputs):
        scores += np.asarray(spec.weights)[antecedents[:, i]]
    consequents = category_of(scores, ruleset.verdict.upper_bounds)
    return RuleBase(antecedents=antecedents, consequents=consequents, scores=scores)


def rule_code(ruleset: Ruleset, rule: int) -> str:
    """The paper's Table 7 spelling of a rule's antecedent, e.g. ``"mcccn"``.

    A two-term input is spelled ``n`` (normal) or ``c`` (contact), as in the paper.
    """
    terms = ruleset.rules.antecedents[rule]
    return "".join(spec.terms[t][0] for spec, t in zip(ruleset.inputs, terms, strict=True))


def rule_text(ruleset: Ruleset, rule: int) -> str:
    """Human-readable rule, e.g. ``"temp=mild & rr=critical & ... -> serious"``."""
    terms = ruleset.rules.antecedents[rule]
    parts = [f"{spec.label}={spec.terms[t]}" for spec, t in zip(ruleset.inputs, terms, strict=True)]
    return " & ".join(parts) + f" -> {VERDICT_TERMS[ruleset.rules.consequents[rule]]}"


def _parse_input(raw: Mapping[str, Any]) -> InputSpec:
    terms = tuple(raw["terms"].keys())
    ranges = tuple((float(lo), float(hi)) for lo, hi in raw["terms"].values())
    weights = tuple(float(raw["weights"][t]) for t in terms)
    spec = InputSpec(
        name=str(raw["name"]),
        label=str(raw.get("label", raw["name"])),
        unit=str(raw.get("unit", "")),
        terms=terms,
        ranges=ranges,
        weights=weights,
        transition=float(raw["transition"]),
        fou=float(raw.get("fou", 0.0)),
    )
    _validate_axis(spec.name, spec.ranges, spec.transition, spec.fou)
    return spec


def _validate_axis(
    name: str, ranges: Sequence[tuple[float, float]], transition: float, fou: float
) -> None:
    lows = sorted(ranges)
    for (lo1, hi1), (lo2, _) in itertools.pairwise(lows):
        if abs(hi1 - lo2) > 1e-9:
            raise ValidationError(f"{name}: ranges must touch ({lo1}-{hi1} then {lo2}-)")
    if transition <= 0 or fou < 0:
        raise ValidationError(f"{name}: transition must be > 0 and fou >= 0")


def parse_ruleset(raw: Mapping[str, Any]) -> Ruleset:
    """Build a :class:`Ruleset` from the decoded JSON document."""
    inputs = tuple(_parse_input(item) for item in raw["inputs"])
    v = raw["verdict"]
    if tuple(v["terms"].keys()) != VERDICT_TERMS:
        raise ValidationError(f"verdict terms must be {VERDICT_TERMS}")
    ranges = tuple((float(lo), float(hi)) for lo, hi in v["terms"].values())
    _validate_axis("verdict", ranges, float(v["transition"]), float(v.get("fou", 0.0)))
    verdict = VerdictSpec(
        terms=VERDICT_TERMS,
        ranges=ranges,
        transition=float(v["transition"]),
        fou=float(v.get("fou", 0.0)),
        step=float(v.get("step", 0.05)),
    )
    normalisation = str(raw.get("normalisation", "per-input"))
    if normalisation not in {"per-input", "global", "none"}:
        raise ValidationError(f"unknown normalisation {normalisation!r}")
    return Ruleset(
        name=str(raw["name"]),
        inputs=inputs,
        verdict=verdict,
        normalisation=normalisation,
        rule_output=str(raw.get("rule_output", "weighted-sum")),
    )


def load_ruleset(name_or_path: str | Path = "flcd-2021-v1") -> Ruleset:
    """Load a rule set shipped with the package (by name) or from a JSON file path."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.exists():
        text = path.read_text(encoding="utf-8")
    else:
        resource = resources.files("iomt.triage").joinpath("rulesets", f"{name_or_path}.json")
        if not resource.is_file():
            raise ValidationError(f"no rule set named {name_or_path!r}")
        text = resource.read_text(encoding="utf-8")
    return parse_ruleset(json.loads(text))
