"""Triage verdicts as the dashboard shows them: which verdict leads, and its explanation.

The triage engines choose their own explanation keys; :func:`explain` recognises the FLCD
step's (categories, rules, memberships, NEWS2 points) and other common ones.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from iomt.domain.triage import TriageLevel
from iomt.store.models import VerdictRow


def parse_level(label: str | None) -> TriageLevel | None:
    """The stored level label as a TriageLevel (None for a missing or unknown label)."""
    if not label:
        return None
    try:
        return TriageLevel.from_label(label)
    except KeyError:
        return None


def pick_primary(verdicts: Sequence[VerdictRow]) -> VerdictRow | None:
    """Of several methods' verdicts for the same window, the fuzzy (FLCD) one if present.

    The dashboard leads with the fuzzy verdict (the platform's own triage); NEWS2 rides
    along in its ``news2`` column. Other methods are used when there is no fuzzy verdict.
    """
    if not verdicts:
        return None
    fuzzy = [v for v in verdicts if v.method.lower().startswith(("flcd", "fuzzy", "it2", "t1"))]
    return (fuzzy or list(verdicts))[0]


def latest_verdicts_by_window(verdicts: Sequence[VerdictRow]) -> list[VerdictRow]:
    """One verdict per window (the primary method's), newest window first."""
    by_start: dict[datetime, list[VerdictRow]] = defaultdict(list)
    for verdict in verdicts:
        by_start[verdict.window_start].append(verdict)
    chosen = [pick_primary(group) for _, group in sorted(by_start.items(), reverse=True)]
    return [v for v in chosen if v is not None]


@dataclass(frozen=True, slots=True)
class VerdictView:
    """A verdict with its explanation split into what a clinician reads first."""

    level: TriageLevel | None
    value: float
    method: str
    start: datetime
    end: datetime
    news2: int | None
    news2_partial: bool
    scale: str | None
    aggregates: list[tuple[str, str | None]]
    missing: list[str]
    categories: list[tuple[str, str]]
    rules: list[str]
    other: list[tuple[str, str]]


def _text(value: Any) -> str:
    """A JSON-ish value as short readable text."""
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False)


def _rule_text(rule: Any) -> str:
    """One fuzzy rule (string or mapping) as ``IF a is x AND ... THEN level (strength)``."""
    if not isinstance(rule, Mapping):
        return _text(rule)
    if "text" in rule:
        text = str(rule["text"])
    else:
        antecedent = rule.get("if") or rule.get("antecedent") or rule.get("inputs") or {}
        if isinstance(antecedent, Mapping):
            clause = " AND ".join(f"{k} is {_text(v)}" for k, v in antecedent.items())
        else:
            clause = _text(antecedent)
        then = rule.get("then") or rule.get("consequent") or rule.get("output") or "?"
        text = f"IF {clause} THEN {_text(then)}" if clause else f"THEN {_text(then)}"
    strength = next(
        (rule[k] for k in ("strength", "firing", "activation", "weight", "degree") if k in rule),
        None,
    )
    if isinstance(strength, int | float):
        text += f" (firing strength {strength:.2f})"
    return text


_CATEGORY_KEYS = ("categories", "symptom_categories", "symptoms")
_RULE_KEYS = ("strongest_rules", "top_rules", "rules", "fired_rules")
_SCALE_KEYS = ("scale", "range")
_MEMBERSHIP_KEYS = ("memberships", "membership")
_NEWS2_KEYS = ("news2_components",)


def _category_text(name: str, category: Any, memberships: Mapping[str, Any]) -> str:
    """``"serious (membership 0.70; mild 0.30)"``: the category and the other active terms."""
    degree = None
    if isinstance(category, Mapping):
        degree = category.get("membership") or category.get("degree")
        category = category.get("category") or category.get("label") or category.get("term")
    if category is None:
        return "not measured"
    label = _text(category)
    degrees = memberships.get(name)
    if isinstance(degrees, Mapping):
        if degree is None and isinstance(degrees.get(label), int | float):
            degree = degrees[label]
        others = [
            f"{term} {float(d):.2f}"
            for term, d in degrees.items()
            if term != label and isinstance(d, int | float) and d > 0
        ]
    else:
        others = []
    if isinstance(degree, int | float):
        label += f" (membership {degree:.2f}" + (f"; {', '.join(others)})" if others else ")")
    return label


def _news2_text(components: Sequence[Any]) -> str:
    """NEWS2 points per parameter, naming those that were not measured."""
    from iomt.triage.news2 import COMPONENTS

    scored = [f"{n} {c}" for n, c in zip(COMPONENTS, components, strict=False) if c is not None]
    absent = [n for n, c in zip(COMPONENTS, components, strict=False) if c is None]
    text = ", ".join(scored) or "none scored"
    return text + (f" (not measured: {', '.join(absent)})" if absent else "")


def explain(
    explanation: Mapping[str, Any],
) -> tuple[list[tuple[str, str]], list[str], list[tuple[str, str]], str | None]:
    """Split a verdict's explanation into symptom categories, strongest rules, the rest.

    The triage engines choose their own explanation keys; the FLCD step's (``categories``,
    ``rules``, ``memberships``, ``news2_components``) and other common ones are recognised,
    everything else is shown as "more detail".
    """
    categories: list[tuple[str, str]] = []
    rules: list[str] = []
    other: list[tuple[str, str]] = []
    scale: str | None = None
    memberships: Mapping[str, Any] = next(
        (v for k, v in explanation.items() if k in _MEMBERSHIP_KEYS and isinstance(v, Mapping)),
        {},
    )
    for key, value in explanation.items():
        if key in _CATEGORY_KEYS and isinstance(value, Mapping):
            categories.extend(
                (str(name), _category_text(str(name), category, memberships))
                for name, category in value.items()
            )
        elif key in _RULE_KEYS and isinstance(value, Sequence) and not isinstance(value, str):
            rules.extend(_rule_text(rule) for rule in value)
        elif key in _SCALE_KEYS:
            scale = _text(value)
        elif key in _NEWS2_KEYS and isinstance(value, Sequence) and not isinstance(value, str):
            other.append(("NEWS2 points", _news2_text(value)))
        elif key in _MEMBERSHIP_KEYS and isinstance(value, Mapping):
            continue
        else:
            other.append((str(key), _text(value)))
    return categories, rules, other, scale


def to_verdict_view(row: VerdictRow) -> VerdictView:
    """A stored verdict for display."""
    categories, rules, other, scale = explain(row.explanation or {})
    aggregates = [
        (str(name), None if value is None else _text(value))
        for name, value in (row.aggregates or {}).items()
    ]
    return VerdictView(
        level=parse_level(row.level),
        value=row.value,
        method=row.method,
        start=row.window_start,
        end=row.window_end,
        news2=row.news2,
        news2_partial=bool(row.news2_partial),
        scale=scale,
        aggregates=aggregates,
        missing=[str(m) for m in (row.missing or [])],
        categories=categories,
        rules=rules,
        other=other,
    )
