"""HTML report of a held-out evaluation: confusion matrix, ROC, score histograms, t-SNE.

Computes the figures from a run's saved test predictions (``test_predictions.npz``) and its
report (``eval.json``), draws them with matplotlib (Agg) and embeds them as PNG in one
self-contained HTML page.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from iomt.vision.cards import METRIC_KEYS
from iomt.vision.evaluate import Predictions
from iomt.vision.tasks import TaskSpec

NORMAL_FINDINGS = {"normal", "no finding", "regular", "healthy"}


def finding_category(finding: str, label: str) -> str:
    """``COVID``, ``normal`` or ``other disease`` from a manifest ``finding`` (or the label)."""
    text = (finding or label).strip().lower()
    if "covid" in text and "non-covid" not in text:
        return "COVID"
    if text in NORMAL_FINDINGS:
        return "normal"
    return "other disease"


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def confusion_figure(matrix: list[list[int]], labels: list[str], title: str) -> str:
    """Confusion matrix (rows = truth) as a base64 PNG."""
    import matplotlib.pyplot as plt

    cm = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(labels), 1.0 + 0.8 * len(labels)))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                color="white" if cm[i, j] > cm.max() / 2 else "black",
            )
    return _png(fig)


def roc_figure(spec: TaskSpec, pred: Predictions, threshold: float | None) -> str:
    """ROC curve(s): the positive class (binary) or one-vs-rest per class."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    classes = [spec.positive_index] if spec.is_binary else range(len(spec.labels))
    for k in classes:
        y = pred.targets == k
        if y.all() or not y.any():
            continue
        fpr, tpr, _ = roc_curve(y, pred.probs[:, k])
        auc = roc_auc_score(y, pred.probs[:, k])
        ax.plot(fpr, tpr, label=f"{spec.labels[k]} (AUC {auc:.3f})")
        if threshold is not None and spec.is_binary:
            pos = pred.probs[:, k] >= threshold
            ax.plot(
                [(pos & ~y).sum() / max((~y).sum(), 1)],
                [(pos & y).sum() / y.sum()],
                "ko",
                label=f"frozen threshold {threshold:.3f}",
            )
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("ROC (held-out test)")
    return _png(fig)


def histogram_figure(
    spec: TaskSpec, pred: Predictions, labels: list[str], threshold: float | None
) -> str:
    """Histogram of the positive score (binary) or the top score, by finding category."""
    import matplotlib.pyplot as plt

    k = spec.positive_index if spec.is_binary else None
    scores = pred.probs[:, k] if k is not None else pred.probs.max(axis=1)
    findings = pred.findings if pred.findings is not None else np.array([""] * len(scores))
    if spec.is_binary:
        cats = np.array(
            [finding_category(f, labels[t]) for f, t in zip(findings, pred.targets, strict=True)]
        )
    else:
        cats = np.array([labels[t] for t in pred.targets])
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    bins = np.linspace(0, 1, 26).tolist()
    for cat in sorted(set(cats.tolist())):
        ax.hist(
            scores[cats == cat], bins=bins, alpha=0.55, label=f"{cat} (n={(cats == cat).sum()})"
        )
    if threshold is not None:
        ax.axvline(threshold, color="k", linestyle="--", label="threshold")
    ax.set_xlabel(f"P({spec.positive_label})" if k is not None else "top-class probability")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    ax.set_title("Scores by group")
    return _png(fig)


def tsne_figure(pred: Predictions, labels: list[str], seed: int = 0) -> str | None:
    """t-SNE of the penultimate features, coloured by true label (None without features)."""
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    if pred.embeddings is None or len(pred.embeddings) < 5:
        return None
    perplexity = float(min(30, max(2, (len(pred.embeddings) - 1) // 3)))
    xy: NDArray[Any] = TSNE(
        n_components=2, perplexity=perplexity, random_state=seed, init="pca"
    ).fit_transform(pred.embeddings)
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    for k, name in enumerate(labels):
        m = pred.targets == k
        if m.any():
            ax.scatter(xy[m, 0], xy[m, 1], s=10, label=name, alpha=0.7)
    ax.legend(fontsize=8)
    ax.set_title("t-SNE of penultimate features")
    ax.set_xticks([])
    ax.set_yticks([])
    return _png(fig)


def _metric_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    ci = report.get("ci", {})
    for key in (*METRIC_KEYS, "threshold"):
        if key not in report or report[key] is None:
            continue
        value = report[key]
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        bounds = ci.get(key, {})
        for kind in ("wilson", "bootstrap"):
            if kind in bounds:
                lo, hi = bounds[kind]
                text += f"  [{lo:.3f}, {hi:.3f}] ({kind})"
        rows.append((key, text))
    return rows


def render_html(
    spec: TaskSpec, run: dict[str, Any], report: dict[str, Any], pred: Predictions
) -> str:
    """The full HTML page for one run's held-out evaluation."""
    labels = list(spec.labels)
    threshold = run.get("threshold")
    figs: list[tuple[str, str | None]] = [
        ("Confusion matrix (images)", confusion_figure(_matrix(report), labels, "images")),
        ("ROC", roc_figure(spec, pred, threshold)),
        ("Score histogram by group", histogram_figure(spec, pred, labels, threshold)),
        ("t-SNE", tsne_figure(pred, labels)),
    ]
    if "group" in report:
        figs.insert(
            1,
            (
                "Confusion matrix (patients)",
                confusion_figure(_matrix(report["group"]), labels, "patients"),
            ),
        )
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(spec.name)} held-out report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
        "img{margin:6px;border:1px solid #eee}</style></head><body>",
        f"<h1>{html.escape(spec.name)}: {html.escape(str(run['config']['arch']))} "
        f"({run['input_size']} px)</h1>",
        f"<p>Held-out test groups never seen in training or model selection. Threshold frozen on "
        f"validation data: {threshold}. Split: {html.escape(json.dumps(run.get('split_sizes')))}"
        "</p>",
    ]
    for scope, rep in (
        ("images", report),
        ("patients (mean probability per group)", report.get("group")),
        ("adults only", report.get("adult")),
    ):
        if rep:
            parts.append(f"<h2>Metrics: {scope}</h2><table>")
            parts += [
                f"<tr><th>{k}</th><td>{html.escape(v)}</td></tr>" for k, v in _metric_rows(rep)
            ]
            parts.append("</table>")
    for title, png in figs:
        if png:
            parts.append(f"<h2>{title}</h2><img alt='{title}' src='data:image/png;base64,{png}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _matrix(report: dict[str, Any]) -> list[list[int]]:
    conf = report["confusion"]
    return conf["matrix"] if isinstance(conf, dict) else conf


def build_report(run_dir: str | Path, spec: TaskSpec) -> tuple[str, dict[str, Any]]:
    """(HTML, JSON report) for the run in ``run_dir``."""
    run_dir = Path(run_dir)
    run = json.loads((run_dir / "run.json").read_text())
    report = json.loads((run_dir / "eval.json").read_text())
    pred = Predictions.load(str(run_dir / "test_predictions.npz"))
    return render_html(spec, run, report, pred), report
