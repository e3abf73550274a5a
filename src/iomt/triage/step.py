"""The live triage step: closed windows in, FLCD verdicts with NEWS2 out.

:class:`FLCDTriageStep` implements :class:`iomt.domain.analysis.TriageStep`. One ``assess``
call aggregates every window (:mod:`iomt.triage.windowing`), runs the engine once over the
batch and attaches NEWS2: full when systolic BP, consciousness and supplemental O2 were also
entered for the window (their last value counts), partial otherwise.

A missing sign is read as unknown (it may be anything, which leans the verdict upwards). A
window with none of the four vital signs (only proximity, or nothing) would then come out
"serious" on no evidence; such windows are read with missing signs as normal instead and
say so in the explanation (``"note"``), so a wearable taken off does not raise an alert.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from iomt.domain.analysis import TriageVerdict, WindowVitals
from iomt.domain.triage import TriageLevel
from iomt.domain.vitals import VitalKind
from iomt.triage.classifier import FLCDClassifier
from iomt.triage.engine import EngineType, FuzzyEngine
from iomt.triage.news2 import news2
from iomt.triage.ruleset import VERDICT_TERMS, category_of
from iomt.triage.windowing import INPUT_KINDS, WindowSpec, aggregate_arrays, last_value, pad_windows


class FLCDTriageStep:
    """FLCD verdicts (type-1 or type-2) for closed windows.

    Parameters
    ----------
    classifier
        A (fitted or published-parameter) :class:`FLCDClassifier`.
    window
        Aggregation settings (minimum readings per kind).
    top_rules
        How many of the strongest rules each verdict's explanation lists.
    """

    def __init__(
        self,
        classifier: FLCDClassifier | None = None,
        window: WindowSpec | None = None,
        top_rules: int = 3,
    ) -> None:
        self.classifier = classifier or FLCDClassifier()
        self.window = window or WindowSpec()
        self.top_rules = top_rules
        engine, _ = self.classifier._engine()
        self.name = engine.method
        self._blind_engine = FuzzyEngine(
            engine.ruleset, engine.kind, missing="normal", normalisation=engine.normalisation
        )
        self._columns = [list(INPUT_KINDS).index(n) for n in engine.ruleset.input_names]

    def assess(self, windows: Sequence[WindowVitals]) -> list[TriageVerdict]:
        """Return one verdict per window, in order (one engine call for the batch)."""
        if not windows:
            return []
        raw = pad_windows(windows)
        x_all, missing = aggregate_arrays(raw, self.window)
        x = x_all[:, self._columns]
        explained = self.classifier.explain(x, top=self.top_rules)
        vital_cols = [i for i, n in enumerate(INPUT_KINDS) if n != "social_contact"]
        blind = np.isnan(x_all[:, vital_cols]).all(axis=1)
        if blind.any():
            _, cuts = self.classifier._engine()
            values = self._blind_engine.verdict_value(x[blind])
            for row, value, level in zip(
                np.flatnonzero(blind).tolist(), values, category_of(values, cuts), strict=True
            ):
                explained[row]["value"] = float(value)
                explained[row]["level"] = VERDICT_TERMS[int(level)]
                explained[row]["rules"] = []
                explained[row]["note"] = "no vital-sign readings in this window: not informative"
        names = list(INPUT_KINDS)
        idx = {name: i for i, name in enumerate(names)}
        score = news2(
            resp_rate=x_all[:, idx["resp_rate"]],
            spo2=x_all[:, idx["spo2"]],
            heart_rate=x_all[:, idx["heart_rate"]],
            temperature_f=x_all[:, idx["temperature"]],
            systolic_bp=last_value(raw[VitalKind.SYSTOLIC_BP]),
            consciousness=last_value(raw[VitalKind.CONSCIOUSNESS]),
            on_oxygen=last_value(raw[VitalKind.SUPPLEMENTAL_O2]),
        )
        verdicts = []
        for n, info in enumerate(explained):
            aggregates = {
                name: (None if np.isnan(x_all[n, i]) else round(float(x_all[n, i]), 3))
                for i, name in enumerate(names)
            }
            absent = [names[i] for i in np.flatnonzero(missing[n])]
            verdicts.append(
                TriageVerdict(
                    level=TriageLevel.from_label(info["level"]),
                    value=round(info["value"], 4),
                    method=self.name,
                    aggregates=aggregates,
                    missing=absent,
                    explanation={
                        **({"note": info["note"]} if "note" in info else {}),
                        "categories": info["categories"],
                        "rules": info["rules"],
                        "memberships": info["memberships"],
                        "news2_components": [
                            None if np.isnan(c) else int(c) for c in score.components[n]
                        ],
                    },
                    news2=int(score.score[n]),
                    news2_partial=bool(score.partial[n]),
                )
            )
        return verdicts


def default_triage_step(kind: EngineType = "t1") -> FLCDTriageStep:
    """The platform's default triage step: FLCD with the published ``flcd-2021-v1`` rule set."""
    return FLCDTriageStep(FLCDClassifier(type=kind))
