"""Human-readable model cards (``MODEL_CARD.md``) from an exported model's ``card.json``.

The card states the data, the exact training command, the held-out metrics with 95 % CIs
next to the papers' published figures and the project's targets, and the latency, and says
plainly where a target is missed.
"""

from __future__ import annotations

from typing import Any

#: Published figures to compare with (from ../shared/PAPERS.md), per task.
PAPER_FIGURES: dict[str, str] = {
    "chest/cxr-covid": (
        "Paper 1 (ResNet50, ImageNet-pretrained, 224 px, 10-fold CV, COVID vs CheXpert): "
        "accuracy 98.6 %, sensitivity 97.3 %, specificity 98.2 %, F1 97.87 %, AUC 0.98."
    ),
    "chest/ct-covid": (
        "Paper 1 reports the same ResNet50 figures for 'X-ray/CT' (accuracy 98.6 %, "
        "sensitivity 97.3 %, AUC 0.98); no separate CT figure is given."
    ),
    "chest/lus": (
        "Paper 5 (VGG16 + head, federated, POCUS): per-class F1 US COVID 0.97 / US healthy 0.90 "
        "(specialised FL), 2 classes only; no 3-class figure."
    ),
    "blood/leukemia": (
        "Paper 4 (ResNet-34 / DenseNet-121, 5 classes on ALL-IDB + ASH, augmented before "
        "splitting, i.e. leaky): mean accuracy 99.56 % / 99.91 %. Published APL-vs-AML systems "
        "on this source (Sidhom et al. 2021) report patient-level AUC about 0.86 with many more "
        "cells per patient."
    ),
    "blood/wbc-types": (
        "Paper 4 (ResNet-34 / DenseNet-121, leaky split): mean accuracy 99.56 % / 99.91 % on a "
        "different 5-class leukemia task; no figure for these five cell types."
    ),
}

#: Project targets on patient-disjoint held-out data (issue 4): (scope, metric, minimum).
TARGETS: dict[str, list[tuple[str, str, float]]] = {
    "chest/cxr-covid": [
        ("image", "auc", 0.98),
        ("image", "sensitivity", 0.95),
        ("adult", "auc", 0.98),
        ("adult", "sensitivity", 0.95),
    ],
    "chest/ct-covid": [("image", "auc", 0.95)],
    "chest/lus": [("image", "macro_f1", 0.85)],
    "blood/leukemia": [("group", "auc", 0.85)],
    "blood/wbc-types": [("image", "macro_f1", 0.95)],
}

#: What each task's training did about its dataset's caveats (from the dataset READMEs).
TASK_NOTES: dict[str, str] = {
    "chest/cxr-covid": (
        "Shortcut: 797 of 898 non-COVID images are pediatric (Kermany), every COVID image is "
        "adult, so a model can score by recognising children. Countermeasures: the sampler "
        "gives adult and pediatric non-COVID images equal total weight (and COVID as much as "
        "all non-COVID); the best epoch and the frozen threshold are chosen on ADULT "
        "validation images only. The adults-only column is the honest figure; the all-images "
        "column still profits from the children."
    ),
    "chest/ct-covid": (
        "COVID slices were cut from papers (figure style, text, arrows): the split is "
        "paper-disjoint for COVID, but style cues may remain; treat the AUC as optimistic for "
        "scanner images."
    ),
    "chest/lus": (
        "Frames of one video are strongly correlated and only 12 COVID patients are on the "
        "development side: the held-out test holds few COVID patients, so per-class figures "
        "are very uncertain."
    ),
    "blood/leukemia": (
        "Labels belong to the patient (APL vs other AML), 7 cells per patient; cell "
        "probabilities are averaged per patient and the threshold (sensitivity target 0.9) is "
        "frozen on validation PATIENTS. Cell-level figures are shown for completeness; the "
        "patient column is the one that counts."
    ),
    "blood/wbc-types": (
        "Source confound: basophil/erythroblast/monocyte come from one dataset (PBC, "
        "Barcelona) and myeloblast/seg_neutrophil from another (Munich AML): separation "
        "between the two blocks can use stain and scanner cues. Only 48 images per class on "
        "the development side. In the service, `myeloblast` is the alerting label."
    ),
}

#: Headline metrics of an evaluation report, in display order (also used by
#: :mod:`iomt.vision.report`).
METRIC_KEYS = (
    "n",
    "accuracy",
    "sensitivity",
    "specificity",
    "precision",
    "f1",
    "auc",
    "macro_f1",
    "macro_auc",
)


def _fmt(report: dict[str, Any], key: str) -> str:
    value = report.get(key)
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    text = f"{value:.3f}"
    bounds = (report.get("ci") or {}).get(key) or {}
    for kind in ("wilson", "bootstrap"):
        if bounds.get(kind) and None not in bounds[kind]:
            lo, hi = bounds[kind]
            return f"{text} [{lo:.3f}, {hi:.3f}]"
    return text


def metrics_table(metrics: dict[str, Any]) -> str:
    """Markdown table: one column per scope (images, patients, adults)."""
    scopes = [("images", metrics)]
    if metrics.get("group"):
        scopes.append(("patients (mean prob.)", metrics["group"]))
    if metrics.get("adult"):
        scopes.append(("adults only", metrics["adult"]))
    keys = [k for k in METRIC_KEYS if any(k in rep for _, rep in scopes)]
    lines = [
        "| metric | " + " | ".join(s for s, _ in scopes) + " |",
        "|---|" + "---|" * len(scopes),
    ]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(_fmt(rep, k) for _, rep in scopes) + " |")
    if "per_class" in metrics:
        lines += [
            "",
            "| class | precision | recall | F1 | AUC | support |",
            "|---|---|---|---|---|---|",
        ]
        for name, c in metrics["per_class"].items():
            auc = c.get("auc")
            lines.append(
                f"| {name} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | "
                f"{'n/a' if auc is None else f'{auc:.3f}'} | {c['support']} |"
            )
    return "\n".join(lines)


def target_lines(task: str, metrics: dict[str, Any]) -> list[str]:
    """One line per project target: reached or missed, with the measured value."""
    out = []
    for scope, key, minimum in TARGETS.get(task, []):
        rep = metrics if scope == "image" else metrics.get(scope)
        value = None if rep is None else rep.get(key)
        where = {"group": "patient-level ", "adult": "adults-only "}.get(scope, "")
        if value is None:
            out.append(f"- {where}{key} >= {minimum}: not measurable here")
        else:
            verdict = "reached" if value >= minimum else "**missed**"
            out.append(
                f"- {where}{key} >= {minimum}: {verdict} ({value:.3f} on the held-out split)"
            )
    return out


def variant_lines(card: dict[str, Any]) -> list[str]:
    """Markdown lines for the quantised variants recorded in the card (may be none)."""
    lines = []
    for name, v in (card.get("variants") or {}).items():
        lines.append(
            f"- Variant `{name}` (`{v.get('file')}`, sha256 `{v.get('sha256')}`): "
            f"{'used by the service' if v.get('use') else 'NOT used'}; "
            + ", ".join(
                f"{k} {val:.4g}" if isinstance(val, float) else f"{k} {val}"
                for k, val in (v.get("metrics") or {}).items()
                if isinstance(val, int | float | str)
            )
        )
    return ["## Quantised variants", *lines, ""] if lines else []


def init_text(card: dict[str, Any]) -> str:
    """How the weights started: from scratch, or from a leave-target-out pretrained backbone."""
    init = card.get("init")
    if not init:
        return "trained from scratch (no pretrained weights exist here)"
    sources = ", ".join(f"`{s}`" for s in init.get("sources") or []) or "other datasets"
    left_out = ", ".join(f"`{t}`" for t in init.get("targets") or [card["task"]])
    return (
        f"pretrained on {sources} ({init.get('source_images')} images, leave-target-out: "
        f"{left_out} and every group they hold excluded), fine-tuned"
    )


def render_model_card(card: dict[str, Any], notes: str = "") -> str:
    """The ``MODEL_CARD.md`` text of an exported model."""
    m = card["metrics"]
    sizes = card.get("split_sizes") or {}
    split = ", ".join(f"{k} {v['images']} images / {v['groups']} groups" for k, v in sizes.items())
    lat = card.get("latency") or {}
    thr = card["threshold"]
    lines = [
        f"# {card['id']} ({card['task']}, version {card['version']})",
        "",
        f"- Architecture: `{card['arch']}` {init_text(card)}, input {card['input_size']} px, "
        f"{card['channels']} channel(s), "
        f"normalisation mean {card['mean']} std {card['std']}.",
        f"- Labels (output order): {card['labels']}; "
        + (
            f"positive label `{card['positive_label']}`, threshold {thr:.4f} frozen on "
            f"validation data for sensitivity {card.get('target_sensitivity')}."
            if thr is not None
            else "decision by argmax (no threshold)."
        ),
        f"- Modality {card['modality']}; ONNX opset {card['onnx']['opset']}, outputs `probs` "
        f"[N, K] and `cam` [N, K, h, w]; file {card['size_bytes'] / 1e6:.2f} MB, sha256 "
        f"`{card['sha256']}`.",
        "",
        "## Data",
        f"Dataset folder `../shared/data/{card['task']}` (development side; the curators' own "
        "held-out 20 % is not distributed). Grouped split by `group_id` (no patient or source "
        f"image on two sides): {split}. Manifest hash `{card['data_hash']}`; test rows hash "
        f"`{card.get('data_hash_test')}`.",
        "",
        "## Command",
        "```",
        *([str(card["init"].get("command"))] if (card.get("init") or {}).get("command") else []),
        str(card.get("train_command")),
        f"iomt vision export --run {card.get('train_run', '<run folder>')} "
        f"--out models/{card['id']} --id {card['id']}",
        "```",
        "",
        "## Held-out test metrics (95 % CIs: Wilson for proportions, group bootstrap for F1/AUC)",
        metrics_table(m),
        "",
        "## Against the papers and the project targets",
        f"- Papers: {PAPER_FIGURES.get(card['task'], 'no published figure')}",
        *target_lines(card["task"], m),
        "",
        *variant_lines(card),
        "## Latency",
        f"ONNX Runtime CPU, batch 1, {lat.get('threads')} threads: p50 {lat.get('p50_ms')} ms, "
        f"p90 {lat.get('p90_ms')} ms ({lat.get('note', '')}).",
        "",
        "## Limits",
        "- Trained on a shared 2-core CPU in minutes, "
        + (
            "from a backbone pretrained here on a few thousand images"
            if card.get("init")
            else "from random initialisation"
        )
        + ", on a few hundred images: the held-out set is small, so the CIs are wide.",
        "- The papers' architectures (ResNet50, ResNet-34, DenseNet-121, VGG16) are built and "
        "tested by `iomt.vision.models` but were not trained to convergence here (no GPU, no "
        "pretrained weights); this compact CNN was chosen for the CPU budget.",
    ]
    task_note = TASK_NOTES.get(card["task"], "")
    if task_note or notes:
        lines += ["", "## Notes"]
        for text in (task_note, notes):
            if text:
                lines += [text.strip(), ""]
    return "\n".join(lines) + "\n"
