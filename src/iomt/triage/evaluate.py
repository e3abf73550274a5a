"""The paper's evaluation on generated data: 10-fold cross-validation of FLCD and baselines.

Models: FLCD type-1 with the published parameters (no fitting), FLCD type-1 and type-2 with
thresholds learned per fold, FLCD type-1 with the paper's KNN-wrapper weights, NEWS2
(partial: RR, SpO2, pulse, temperature) mapped to the four levels, the paper's baselines
from scikit-learn (SVM, naive Bayes, KNN, decision tree, logistic regression) and, for
context, a random forest and gradient boosting (median imputation and standardisation in a
pipeline). Out-of-fold predictions of all folds are
pooled and scored once with :func:`iomt.evaluation.metrics.multiclass_report` (Wilson and
bootstrap 95% CIs). scikit-learn and matplotlib are imported inside the functions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from iomt.triage.classifier import FLCDClassifier
from iomt.triage.news2 import news2, news2_level
from iomt.triage.ruleset import VERDICT_TERMS, category_of
from iomt.triage.synthetic import SyntheticData, generate

log = logging.getLogger(__name__)

#: The paper's Table 8 and 9 figures (percent).
PAPER = {
    "flcd": {"accuracy": 94.84, "precision": 94.73, "recall": 93.35, "specificity": 98.06,
             "f1": 94.42, "auc": 95.7, "error_rate": 2.52},
    "svm": {"accuracy": 90.43, "f1": 93.0, "auc": 90.9},
    "naive_bayes": {"accuracy": 90.58, "f1": 80.6, "auc": 91.2},
    "knn": {"accuracy": 87.94, "f1": 77.5, "auc": 90.9},
    "decision_tree": {"accuracy": 90.89, "f1": 82.5, "auc": 92.0},
    "logistic_regression": {"accuracy": 90.43, "f1": 82.5, "auc": 90.1},
}  # fmt: skip

Fitter = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _flcd(**params: Any) -> Fitter:
    def run(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        clf = FLCDClassifier(**params)
        if params.get("fit_thresholds", True) or params.get("weights", "paper") != "paper":
            clf.fit(x_tr, y_tr)
        values = clf.decision_function(x_te)
        return category_of(values, clf.thresholds_), clf.scores_from_values(values)

    return run


def _news2_partial(columns: list[str]) -> Fitter:
    def run(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from scipy.special import softmax

        c = {name: x_te[:, columns.index(name)] for name in columns}
        s = news2(c["resp_rate"], c["spo2"], c["heart_rate"], c["temperature"])
        level = news2_level(s.score, s.any_three)
        # Scores for AUC: distance of the NEWS2 score to each level's band (0, 1-4, 5-6, 7+).
        lo = np.array([0, 1, 5, 7])
        hi = np.array([0, 4, 6, 20])
        v = s.score[:, None] + 0.5 * s.any_three[:, None]
        dist = np.maximum(lo - v, 0) + np.maximum(v - hi, 0)
        return level, softmax(-dist, axis=1)

    return run


def _sklearn(name: str, seed: int) -> Fitter:
    def run(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.naive_bayes import GaussianNB
        from sklearn.neighbors import KNeighborsClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC
        from sklearn.tree import DecisionTreeClassifier

        models: dict[str, Any] = {
            "svm": SVC(kernel="rbf", random_state=seed),
            "naive_bayes": GaussianNB(),
            "knn": KNeighborsClassifier(n_neighbors=5),
            "decision_tree": DecisionTreeClassifier(random_state=seed),
            "logistic_regression": LogisticRegression(max_iter=2000),
            "random_forest": RandomForestClassifier(200, random_state=seed, n_jobs=1),
            "gradient_boosting": HistGradientBoostingClassifier(random_state=seed),
        }
        model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), models[name])
        model.fit(x_tr, y_tr)
        pred = model.predict(x_te)
        if name == "svm":
            from scipy.special import softmax

            scores = softmax(model.decision_function(x_te), axis=1)
        else:
            scores = model.predict_proba(x_te)
        return pred, scores

    return run


def _macro(kind: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """Macro precision, recall or specificity from a confusion matrix (for the bootstrap)."""

    def stat(t: np.ndarray, p: np.ndarray) -> float:
        k = len(VERDICT_TERMS)
        cm = np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(float)
        tp = np.diag(cm)
        fp = cm.sum(axis=0) - tp
        fn = cm.sum(axis=1) - tp
        tn = cm.sum() - tp - fp - fn
        num, den = {"precision": (tp, tp + fp), "recall": (tp, tp + fn)}.get(kind, (tn, tn + fp))
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(np.mean(np.where(den > 0, num / den, 0.0)))

    return stat


def add_average_cis(
    report: dict[str, Any], y: np.ndarray, pred: np.ndarray, n_boot: int, seed: int
) -> None:
    """Bootstrap CIs of the macro precision/recall/specificity and the micro averages.

    With one label per window, micro precision = micro recall = micro F1 = accuracy, so the
    micro averages carry the accuracy's Wilson interval.
    """
    from iomt.evaluation.metrics import bootstrap_interval

    for kind in ("precision", "recall", "specificity"):
        ci = bootstrap_interval(_macro(kind), y, pred, n_boot=n_boot, seed=seed)
        report["ci"][f"macro_{kind}"] = {"bootstrap": list(ci)}
    for kind in ("precision", "recall", "f1"):
        report[f"micro_{kind}"] = report["accuracy"]
        report["ci"][f"micro_{kind}"] = report["ci"]["accuracy"]


def model_zoo(columns: list[str], seed: int) -> dict[str, Fitter]:
    """Every model the evaluation compares, by report name."""
    zoo: dict[str, Fitter] = {
        "flcd_t1_published": _flcd(type="t1", fit_thresholds=False),
        "flcd_t1": _flcd(type="t1"),
        "flcd_t2": _flcd(type="t2"),
        "flcd_t1_knn_weights": _flcd(type="t1", weights="knn"),
        "news2_partial": _news2_partial(columns),
    }
    for name in ("svm", "naive_bayes", "knn", "decision_tree", "logistic_regression"):
        zoo[name] = _sklearn(name, seed)
    # stronger learners than the paper's, for context
    for name in ("random_forest", "gradient_boosting"):
        zoo[name] = _sklearn(name, seed)
    return zoo


def cross_validate(
    data: SyntheticData,
    *,
    folds: int = 10,
    seed: int = 0,
    n_boot: int = 500,
    models: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Stratified k-fold CV of every model; pooled out-of-fold reports with 95% CIs."""
    from sklearn.model_selection import StratifiedKFold

    from iomt.evaluation.metrics import multiclass_report

    zoo = model_zoo(data.columns, seed)
    names = models or list(zoo)
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(data.X, data.y))
    out: dict[str, Any] = {}
    for name in names:
        pred = np.empty(len(data.y), dtype=int)
        proba = np.empty((len(data.y), len(VERDICT_TERMS)))
        fold_acc = []
        for train, test in splits:
            p, s = zoo[name](data.X[train], data.y[train], data.X[test])
            pred[test], proba[test] = p, s
            fold_acc.append(float((p == data.y[test]).mean()))
        report = multiclass_report(
            data.y, pred, list(VERDICT_TERMS), y_proba=proba, n_boot=n_boot, seed=seed
        )
        add_average_cis(report, data.y, pred, n_boot, seed)
        report["fold_accuracy"] = {"mean": float(np.mean(fold_acc)), "sd": float(np.std(fold_acc))}
        out[name] = report
        if progress:
            progress(name)
    return out


def markdown_table(reports: dict[str, Any]) -> str:
    """One row per model: every averaged metric in percent with its 95% CI."""

    def cell(r: dict[str, Any], key: str, method: str = "bootstrap") -> str:
        value = r.get(key, float("nan"))
        ci = r["ci"].get(key, {}).get(method, [float("nan")] * 2)
        return f"{100 * value:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"

    lines = [
        "| model | accuracy (= micro P/R/F1) | error | macro precision | macro recall | "
        "macro specificity | macro F1 | macro AUC | paper accuracy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    paper_key = {"flcd_t1": "flcd", "flcd_t2": "flcd", "flcd_t1_published": "flcd"}
    for name, r in reports.items():
        lo, hi = r["ci"]["accuracy"]["wilson"]
        paper = PAPER.get(paper_key.get(name, name), {}).get("accuracy")
        lines.append(
            f"| {name} | {cell(r, 'accuracy', 'wilson')} "
            f"| {100 * r['error_rate']:.1f} [{100 * (1 - hi):.1f}, {100 * (1 - lo):.1f}] "
            f"| {cell(r, 'macro_precision')} | {cell(r, 'macro_recall')} "
            f"| {cell(r, 'macro_specificity')} | {cell(r, 'macro_f1')} | {cell(r, 'macro_auc')} "
            f"| {'' if paper is None else f'{paper:.2f}'} |"
        )
    return "\n".join(lines)


def write_outputs(result: dict[str, Any], out: Path) -> list[Path]:
    """Write ``evaluation.json``, ``evaluation.md`` and plots (accuracy bars, confusions)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = [out / "evaluation.json", out / "evaluation.md"]
    written[0].write_text(json.dumps(result, indent=1, default=float), encoding="utf-8")
    written[1].write_text(result["table_markdown"] + "\n", encoding="utf-8")
    reports = result["models"]
    names = list(reports)
    acc = np.array([reports[n]["accuracy"] for n in names]) * 100
    lo = np.array([reports[n]["ci"]["accuracy"]["wilson"][0] for n in names]) * 100
    hi = np.array([reports[n]["ci"]["accuracy"]["wilson"][1] for n in names]) * 100
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.bar(names, acc, yerr=[acc - lo, hi - acc], capsize=3, color="tab:blue")
    ax.axhline(PAPER["flcd"]["accuracy"], color="tab:red", ls="--", label="paper FLCD 94.84%")
    ax.set_ylabel("accuracy % (95% Wilson CI)")
    ax.set_ylim(max(0.0, float(lo.min()) - 10), 100)
    ax.tick_params(axis="x", rotation=40)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=120)
    plt.close(fig)
    written.append(out / "accuracy.png")
    cols = 5
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names, strict=False):
        cm = np.asarray(reports[name]["confusion"])
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
        ax.set_title(name, fontsize=8)
        ax.set_xticks(range(4), [t[:4] for t in VERDICT_TERMS], fontsize=7)
        ax.set_yticks(range(4), [t[:4] for t in VERDICT_TERMS], fontsize=7)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=120)
    plt.close(fig)
    written.append(out / "confusion.png")
    return written


def run_evaluation(
    n: int = 5000,
    *,
    seed: int = 0,
    folds: int = 10,
    n_boot: int = 500,
    models: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
    noise_free: bool = False,
) -> dict[str, Any]:
    """Generate the data set, cross-validate every model and assemble the result object."""
    data = generate(n, seed=seed, noise_free=noise_free)
    reports = cross_validate(
        data, folds=folds, seed=seed, n_boot=n_boot, models=models, progress=progress
    )
    return {
        "dataset": {
            "generator": "iomt.triage.synthetic.generate",
            "n": n,
            "seed": seed,
            "noise_free": noise_free,
            "class_counts": np.bincount(data.y, minlength=4).tolist(),
            "missing_rate": data.missing.mean(axis=0).round(4).tolist(),
            "columns": data.columns,
        },
        "folds": folds,
        "paper": PAPER,
        "models": reports,
        "table_markdown": markdown_table(reports),
    }
