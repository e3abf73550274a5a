"""The metric functions agree with scikit-learn and the intervals behave."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from iomt.evaluation.metrics import (
    aggregate_by_group,
    binary_report,
    bootstrap_interval,
    multiclass_report,
    normal_interval,
    threshold_for_sensitivity,
    wilson_interval,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_report_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    score = np.clip(y * 0.3 + rng.random(300) * 0.8, 0, 1)
    report = binary_report(y, score, 0.5, n_boot=100)
    pred = (score >= 0.5).astype(int)
    assert report["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert report["sensitivity"] == pytest.approx(recall_score(y, pred))
    assert report["specificity"] == pytest.approx(recall_score(1 - y, 1 - pred))
    assert report["precision"] == pytest.approx(precision_score(y, pred))
    assert report["f1"] == pytest.approx(f1_score(y, pred))
    assert report["auc"] == pytest.approx(roc_auc_score(y, score))
    lo, hi = report["ci"]["auc"]["bootstrap"]
    assert lo <= report["auc"] <= hi
    c = report["confusion"]
    assert c["tp"] + c["fn"] + c["fp"] + c["tn"] == 300


@pytest.mark.parametrize("seed", [0, 1])
def test_multiclass_report_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 200)
    proba = rng.dirichlet(np.ones(3), 200)
    proba[np.arange(200), y] += 0.5
    proba /= proba.sum(axis=1, keepdims=True)
    pred = proba.argmax(axis=1)
    report = multiclass_report(y, pred, ["a", "b", "c"], y_proba=proba, n_boot=50)
    assert report["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert report["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    for i, label in enumerate("abc"):
        assert report["per_class"][label]["f1"] == pytest.approx(f1_score(y == i, pred == i))
        assert report["per_class"][label]["auc"] == pytest.approx(
            roc_auc_score(y == i, proba[:, i])
        )
    assert report["macro_auc"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr"))


def test_wilson_interval_known_value() -> None:
    # 97 of 100: Wilson 95% interval from the literature (Newcombe 1998 method 3).
    lo, hi = wilson_interval(97, 100)
    assert lo == pytest.approx(0.9153, abs=1e-3)
    assert hi == pytest.approx(0.9897, abs=1e-3)
    lo_n, hi_n = normal_interval(0.9, 100)
    assert hi_n - lo_n == pytest.approx(2 * 1.96 * np.sqrt(0.9 * 0.1 / 100), rel=1e-3)
    assert normal_interval(0.97, 100)[1] == 1.0  # clipped, unlike Wilson


def test_threshold_reaches_target_sensitivity() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    score = rng.random(500) + 0.4 * y
    t = threshold_for_sensitivity(y, score, 0.973)
    assert recall_score(y, score >= t) >= 0.973
    assert recall_score(y, score >= np.nextafter(t, 2.0)) < 0.973


def test_group_bootstrap_is_wider_for_clustered_data() -> None:
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(20), 10)
    values = np.repeat(rng.random(20), 10)
    naive = bootstrap_interval(np.mean, values, n_boot=300)
    grouped = bootstrap_interval(np.mean, values, groups=groups, n_boot=300)
    assert grouped[1] - grouped[0] > 2 * (naive[1] - naive[0])


def test_aggregate_by_group_rejects_mixed_labels() -> None:
    ids, labels, means = aggregate_by_group(["p1", "p1", "p2"], [1, 1, 0], [0.2, 0.4, 0.9])
    assert ids.tolist() == ["p1", "p2"] and labels.tolist() == [1, 0]
    assert means.tolist() == pytest.approx([0.3, 0.9])
    with pytest.raises(ValueError, match="several labels"):
        aggregate_by_group(["p1", "p1"], [0, 1], [0.1, 0.2])


def test_mean_interval_matches_the_t_formula() -> None:
    from iomt.evaluation.metrics import mean_interval

    values = [0.80, 0.84, 0.78, 0.86, 0.82]  # mean 0.82, sd 0.0316
    half = 2.7764451 * np.std(values, ddof=1) / np.sqrt(5)  # t(0.975, df=4)
    assert mean_interval(values) == pytest.approx((0.82 - half, 0.82 + half))
    assert all(np.isnan(mean_interval([0.8])))
    assert mean_interval([0.5, 0.5, 0.5]) == (0.5, 0.5)
