"""Turn a training checkpoint into a shipped model folder: ONNX file, card, split list.

``models/<id>/`` receives ``model.onnx``, ``card.json`` (``kind: "detector"``), and
``test_files.txt`` (the run's held-out images, so ``iomt detect evaluate`` scores exactly
those). The ONNX boxes are checked against the PyTorch boxes on the validation images before
the card is written.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from iomt.vision.detection.data import load_box_data
from iomt.vision.detection.evaluate import Detections
from iomt.vision.detection.export import box_agreement, export_onnx, write_card
from iomt.vision.detection.report import choose_threshold
from iomt.vision.detection.tasks import get_detection_task
from iomt.vision.detection.train import load_checkpoint, model_from_checkpoint, predict
from iomt.vision.export import json_ready, sha256_file

log = logging.getLogger(__name__)


def ort_predict(path: Path, images: np.ndarray, threads: int = 1) -> list[Detections]:
    """Run the exported graph with ONNX Runtime on uint8 images [N, C, H, W] (model size)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    out = []
    for img in images:
        boxes, scores, labels = session.run(None, {"image": img[None].astype(np.float32) / 255.0})
        out.append(
            Detections(boxes.astype(np.float32), scores.astype(np.float32), labels.astype(np.int64))
        )
    return out


def export_checkpoint(
    checkpoint: Path, model_dir: Path, model_id: str, version: str, command: str = ""
) -> dict[str, Any]:
    """Export ``checkpoint`` into ``model_dir``; returns the card (as written) and checks.

    The operating threshold is chosen on the validation images (max pooled F1); the test
    metrics are added to the card afterwards by whoever evaluates the shipped file.
    """
    ckpt = load_checkpoint(checkpoint)
    cfg = ckpt["config"]
    task = get_detection_task(cfg["task"])
    model = model_from_checkpoint(ckpt)
    model_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(model, model_dir / "model.onnx", task.channels, cfg["img_size"])
    data = load_box_data(cfg["data"], task)
    val = data.subset(ckpt["split"]["val"])
    torch_val = predict(model, val.images)
    ort_val = ort_predict(onnx_path, val.images)
    agree = [
        box_agreement(t.boxes, t.labels, o.boxes, o.labels)
        for t, o in zip(torch_val, ort_val, strict=True)
    ]
    matched = [a for a in agree if a["matched"]]
    check = {
        "images": len(agree),
        "same_count": sum(a["n_torch"] == a["n_ort"] for a in agree),
        "min_iou": min(a["min_iou"] for a in matched) if matched else float("nan"),
    }
    threshold = choose_threshold(val, torch_val, task.labels)
    test_files = [data.manifest.records[i].file for i in ckpt["split"]["test"]]
    (model_dir / "test_files.txt").write_text("\n".join(test_files) + "\n")
    digest = sha256_file(onnx_path)
    hist = ckpt["history"]
    own: dict[str, Any] = next(
        (r for r in hist["epochs"] if int(r["epoch"]) == int(ckpt["epoch"])), {}
    )
    card: dict[str, Any] = {
        "id": model_id,
        "task": task.name,
        "version": version,
        "kind": "detector",
        "arch": cfg["arch"],
        "labels": list(task.labels),
        "alert_labels": list(task.alert_labels),
        "modality": task.modality.value,
        "input_size": [cfg["img_size"], cfg["img_size"]],
        "channels": task.channels,
        "mean": list(ckpt["mean"]),
        "std": list(ckpt["std"]),
        "normalised_in_graph": True,
        "threshold": threshold,
        "threshold_rule": "max pooled object F1 (IoU 0.5) on the validation split",
        "counts": task.counts,
        "data_hash": ckpt["data_hash"],
        "file": "model.onnx",
        "sha256": digest,
        "command": command,
        "training": {
            "config": cfg,
            "epochs_run": len(hist["epochs"]),
            "epoch": int(ckpt["epoch"]),
            "checkpoint": checkpoint.name,
            "val_map50": own.get("val_map50"),
            "val_map": own.get("val_map"),
            "cpu_minutes": round(hist.get("cpu_seconds", 0.0) / 60, 1),
            "split_sizes": {k: len(v) for k, v in ckpt["split"].items()},
        },
        "onnx_check": check,
        "metrics": {},
    }
    card = json_ready(card)
    write_card(model_dir, card)
    log.info(
        "wrote %s (threshold %.2f, ORT/torch min IoU %.4f)", model_dir, threshold, check["min_iou"]
    )
    return card


def _ci(pair: Any) -> str:
    if not pair or any(v is None or v != v for v in pair):  # missing or nan
        return ""
    return f" (95% CI {pair[0]:.3f}-{pair[1]:.3f})"


def _f(value: Any, digits: int = 3) -> str:
    """A number for the markdown card; "n/a" where undefined (None or nan)."""
    if value is None or value != value:
        return "n/a"
    return f"{value:.{digits}f}"


def model_card_markdown(card: dict[str, Any], report: dict[str, Any]) -> str:
    """The human-readable MODEL_CARD.md of a shipped detector."""
    train = card["training"]
    cfg = train["config"]
    m = card["metrics"]
    lines = [
        f"# {card['id']} (version {card['version']})",
        "",
        f"Region detector for `{card['task']}` ({card['modality']}): `{card['arch']}` "
        "(torchvision, trained from scratch: no downloaded weights). Classes: "
        + ", ".join(f"`{c}`" for c in card["labels"])
        + ".",
        "",
        "## Data",
        f"- Folder `{cfg['data']}` (the shared development side; see its README for source "
        "and licence). Split by `group_id` into train / val / test "
        f"{train['split_sizes']['train']} / {train['split_sizes']['val']} / "
        f"{train['split_sizes']['test']} images; `test_files.txt` lists the held-out images.",
        f"- data_hash (train+val rows): `{card['data_hash']}`",
        "",
        "## Training",
        "```",
        f"nice -n 10 iomt detect train --task {cfg['task']} --data {cfg['data']} "
        f"--arch {cfg['arch']} --epochs {cfg['epochs']} --budget-min {cfg['budget_min']:g} "
        f"--wall-min {cfg.get('wall_min', 0.0):g} "
        f"--eval-every {cfg['eval_every']} --threads {cfg['threads']} --out <run dir>",
        card["command"],
        "```",
        f"- {train['epochs_run']} epochs, batch {cfg['batch_size']}, AdamW lr {cfg['lr']:g} "
        f"(warm-up, cosine), {cfg['img_size']} px, box-aware flips/scale/translate; "
        f"{train['cpu_minutes']} CPU minutes. Shipped checkpoint: epoch {train['epoch']} "
        f"of `{train['checkpoint']}` (val mAP@0.5 {_f(train['val_map50'])}, val mAP "
        f"{_f(train['val_map'])}; `best.pt` = best val mAP@0.5, `last.pt` = last epoch).",
        f"- Operating threshold {_f(card['threshold'], 2)}: {card['threshold_rule']}.",
        "",
        f"## Held-out test metrics (ONNX Runtime, {m['subset']}, n = {m['n']} images)",
        f"- mAP@0.5 = {_f(m['map50'])}{_ci(m['ci'].get('map50'))}; "
        f"mAP@0.5:0.95 = {_f(m['map'])}{_ci(m['ci'].get('map'))} "
        "(pycocotools; bootstrap over images)",
        "",
        "| class | boxes | AP50 | AP | recall @1 FP/img | recall @thr | precision @thr | "
        "count MAE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in m["per_class"].items():
        obj = m["objects_at_threshold"][name]
        lines.append(
            f"| {name} | {row['n_gt']} | {_f(row['ap50'])} | {_f(row['ap'])} | "
            f"{_f(m['recall_at_fp_per_image'][name]['fp1'])} | {_f(obj['recall'])}"
            f"{_ci(obj['recall_ci'])} | {_f(obj['precision'])} | {_f(obj['count_mae'], 2)} |"
        )
    lines += ["", "Per-image 'any <class>' at the threshold (Wilson CIs in card.json):", ""]
    for name, row in m["image_any_finding"].items():
        lines.append(
            f"- {name}: sensitivity {_f(row['sensitivity'])}, specificity "
            f"{_f(row['specificity'])}, accuracy {_f(row['accuracy'])} (n = {row['n']})"
        )
    lines += ["", f"_{report['paper_accuracy_note']}_", "", "## Export and latency"]
    chk = card["onnx_check"]
    lines.append(
        f"- ONNX opset 17, fixed input 1x{card['channels']}x{card['input_size'][0]}x"
        f"{card['input_size'][1]} (0-1 scale; normalisation and NMS in the graph); "
        f"{chk['same_count']}/{chk['images']} validation images give the same number of "
        f"boxes in ORT and torch, min IoU of matched boxes {_f(chk['min_iou'], 4)}."
    )
    for key, lat in (card.get("latency") or {}).items():
        if not isinstance(lat, dict):
            continue
        lines.append(
            f"- {key}: p50 {_f(lat['p50_ms'], 1)} ms, p99 {_f(lat['p99_ms'], 1)} ms per image "
            f"({card['latency'].get('images', 'one image')})"
        )
    lines += [
        "",
        "## Limits",
        "- Trained from scratch on a few hundred images within a small CPU budget; not a "
        "clinical device. Boxes are for a clinician to see, not to act on alone.",
        "- Figures: `pr_curves.png`, `examples.png`; full metrics: `metrics.json`.",
        "",
    ]
    return "\n".join(lines)
