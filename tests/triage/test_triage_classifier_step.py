"""Generator, preprocessing, FLCDClassifier, the live step and a tiny evaluation run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from iomt.domain.analysis import TriageStep, WindowVitals
from iomt.domain.triage import TriageLevel
from iomt.domain.vitals import VitalKind
from iomt.triage.classifier import FLCDClassifier, fit_thresholds
from iomt.triage.preprocess import knn_wrapper_weights, reject_outliers
from iomt.triage.ruleset import load_ruleset
from iomt.triage.step import FLCDTriageStep, default_triage_step
from iomt.triage.synthetic import generate


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return generate(1200, seed=7)


def test_generator_is_seeded_and_labels_are_latent_classes(data) -> None:  # type: ignore[no-untyped-def]
    again = generate(1200, seed=7)
    assert np.array_equal(np.nan_to_num(data.X), np.nan_to_num(again.X))
    assert np.array_equal(data.y, again.y)
    rs = load_ruleset()
    idx = (data.categories * np.array([128, 32, 8, 2, 1])).sum(axis=1)
    assert np.array_equal(rs.rules.consequents[idx], data.y)  # label = class of latent categories
    assert set(np.unique(data.y)) == {0, 1, 2, 3}
    assert 0 < np.isnan(data.X).mean() < 0.1  # some outages, marked missing
    assert np.array_equal(np.isnan(data.X), data.missing)
    assert not np.array_equal(np.nan_to_num(data.X[:, :4]), data.true_values[:, :4])  # noisy


def test_outlier_rejection_and_knn_weights(data) -> None:  # type: ignore[no-untyped-def]
    x = data.X.copy()
    x[0, 0] = 130.0
    keep = reject_outliers(x, data.y)
    assert not keep[0] and keep.mean() > 0.9
    w, table = knn_wrapper_weights(np.nan_to_num(data.X, nan=0.0)[:600], data.y[:600])
    assert w.shape == (5,) and (w >= 0.5).all()
    assert table["f_plus"] > 50  # far above the 25 % chance level


def test_fit_thresholds_recovers_cut_points() -> None:
    rng = np.random.default_rng(0)
    v = rng.uniform(0, 15.5, 3000)
    y = np.searchsorted([5.0, 7.0, 11.0], v)
    cuts = fit_thresholds(v, y, np.array([4.2, 6.2, 10.3]))
    assert np.allclose(cuts, [5.0, 7.0, 11.0], atol=0.15)


def test_classifier_sklearn_manners(data) -> None:  # type: ignore[no-untyped-def]
    from sklearn.base import clone

    x, y = data.X, data.y
    clf = FLCDClassifier(type="t1").fit(x[:900], y[:900])
    pred = clf.predict(x[900:])
    proba = clf.predict_proba(x[900:])
    assert proba.shape == (300, 4) and np.allclose(proba.sum(axis=1), 1)
    assert (np.argmax(proba, axis=1) == pred).mean() > 0.99
    assert (pred == y[900:]).mean() > 0.6
    vv = clf.decision_function(x[900:])
    assert vv.min() >= 0 and vv.max() <= 15.5
    twin = clone(clf)
    assert twin.get_params() == clf.get_params() and not hasattr(twin, "engine_")
    published = FLCDClassifier(type="t2")  # usable unfitted, with Table 6 thresholds
    assert published.predict(x[:5]).shape == (5,)


def test_explain_names_categories_and_strongest_rules() -> None:
    clf = FLCDClassifier()
    (info,) = clf.explain(np.array([[96.5, 19.0, 80.0, 92.5, 1.0]]))
    assert info["categories"] == {
        "temperature": "normal",
        "resp_rate": "serious",
        "heart_rate": "normal",
        "spo2": "serious",
        "social_contact": "contact",
    }
    assert info["rules"][0]["code"] == "nsnsc" and info["rules"][0]["strength"] == 1.0
    assert info["level"] == "serious"  # 0 + 3 + 0 + 4 + 1 = 8


def _window(pid: int, values: dict[VitalKind, list[float]]) -> WindowVitals:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return WindowVitals(pid, t0, t0 + timedelta(minutes=15), values)


def test_live_step_verdicts_with_news2() -> None:
    step = default_triage_step()
    assert isinstance(step, TriageStep) and step.name == "flcd-t1/flcd-2021-v1"
    sick = {
        VitalKind.TEMPERATURE: [103.0] * 10,
        VitalKind.SPO2: [90.0, 89.0, 91.0, 90.0],
        VitalKind.HEART_RATE: [125.0, 130.0, 128.0],
        VitalKind.RESP_RATE: [24.0, 25.0, 26.0],
        VitalKind.PROXIMITY: [12.0, 3.0],
        VitalKind.SYSTOLIC_BP: [100.0],
        VitalKind.CONSCIOUSNESS: [0.0],
        VitalKind.SUPPLEMENTAL_O2: [0.0],
    }
    healthy_no_spo2 = {
        VitalKind.TEMPERATURE: [96.8] * 5,
        VitalKind.HEART_RATE: [70.0] * 5,
        VitalKind.RESP_RATE: [14.0] * 5,
        VitalKind.PROXIMITY: [20.0],
    }
    v1, v2 = step.assess([_window(1, sick), _window(2, healthy_no_spo2)])
    assert v1.level is TriageLevel.CRITICAL and v1.value > 10.3
    assert v1.news2 == 3 + 3 + 0 + 2 + 2 + 0 + 2 and v1.news2_partial is False
    assert v1.aggregates["social_contact"] == 1.0 and v1.missing == []
    assert v1.explanation["rules"][0]["code"] == "ccccc"
    assert v2.missing == ["spo2"] and v2.aggregates["spo2"] is None
    assert v2.news2_partial is True
    assert step.assess([]) == []
    (blind,) = step.assess([_window(3, {VitalKind.PROXIMITY: [3.0]})])
    assert blind.level is TriageLevel.NORMAL and "note" in blind.explanation
    assert blind.missing == ["temperature", "resp_rate", "heart_rate", "spo2"]
    assert FLCDTriageStep(FLCDClassifier(type="t2")).name == "flcd-t2/flcd-2021-v1"


def test_tiny_cross_validation_runs_and_reports_cis() -> None:
    pytest.importorskip("sklearn")
    from iomt.triage.evaluate import cross_validate, markdown_table

    reports = cross_validate(
        generate(400, seed=1),
        folds=2,
        n_boot=20,
        models=["flcd_t1", "flcd_t2", "news2_partial", "naive_bayes"],
    )
    assert set(reports) == {"flcd_t1", "flcd_t2", "news2_partial", "naive_bayes"}
    r = reports["flcd_t1"]
    assert 0.5 < r["accuracy"] <= 1 and len(r["ci"]["accuracy"]["wilson"]) == 2
    assert np.asarray(r["confusion"]).sum() == 400
    for key in ("macro_precision", "macro_recall", "macro_specificity", "macro_f1", "macro_auc"):
        lo, hi = r["ci"][key]["bootstrap"]
        assert lo <= r[key] <= hi
    assert r["micro_f1"] == r["accuracy"]
    assert "flcd_t2" in markdown_table(reports)


def test_fit_with_knn_wrapper_weights_rescales_the_rule_set(data) -> None:  # type: ignore[no-untyped-def]
    clf = FLCDClassifier(weights="knn").fit(data.X[:600], data.y[:600])
    assert clf.weight_table_ is not None and len(clf.weight_table_["w"]) == 5
    assert np.allclose(clf.feature_weights_, clf.weight_table_["w"])
    w = clf.feature_weights_
    bounds = [hi for _, hi in clf.engine_.ruleset.verdict.ranges]
    # critical weight is half of each 4-term total (3/6, 5/10, 0.5/1, 6/12) plus contact's
    assert bounds[-1] == pytest.approx(0.5 * w[:4].sum() + w[4])
    assert clf.predict(data.X[600:700]).shape == (100,)
