"""Leave-target-out pretraining: one backbone, supervised by the OTHER datasets of a domain.

No pretrained weights can be downloaded here, so a task's backbone is pretrained on the
pooled images of the other datasets of the same image domain (chest: X-ray, CT, ultrasound;
blood: smear cells) in ``../shared/data``, each with its own labels: one shared
``features`` module and one linear head per source dataset (multi-task). The target dataset
itself is never read for training, and every source row whose ``group_id`` also occurs in the
target's manifest is dropped (``chest/cxr-boxes`` shares ``ieee8023`` patients with
``chest/cxr-covid``), so no target patient is ever seen and any split or cross-validation fold
of the target stays leak-free.

``blood/cell-boxes`` (whole smear fields with RBC / WBC / platelet boxes) enters as a cell
classification task on crops of its boxes (at most ``max_crops_per_class`` per class).

The output folder holds ``backbone.pt`` (the ``features`` state dict, loaded by
``iomt vision train --init``) and ``pretrain.json`` (target, sources with their sizes and
dropped rows, architecture, channels, input size, per-epoch loss, command).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from iomt.vision.data import Manifest, encode_labels, load_image, load_images, read_manifest
from iomt.vision.tasks import get_task

log = logging.getLogger(__name__)

#: The datasets of each image domain under the shared data root (one channel count each).
DOMAIN_SOURCES: dict[str, tuple[str, ...]] = {
    "chest": ("chest/cxr-covid", "chest/ct-covid", "chest/lus", "chest/cxr-boxes"),
    "blood": ("blood/leukemia", "blood/wbc-types", "blood/cell-boxes"),
}

#: Sources whose images are whole fields with labelled boxes: their crops are classified.
BOX_SOURCES: frozenset[str] = frozenset({"blood/cell-boxes"})

BACKBONE_FILE = "backbone.pt"
META_FILE = "pretrain.json"


@dataclass
class PretrainConfig:
    """Everything that defines a pretraining run (saved in ``pretrain.json``)."""

    target: str
    out: str
    data_root: str = "../shared/data"
    #: The target's dataset folder (default ``data_root/target``); only its group ids are read.
    target_data: str | None = None
    #: Source dataset names (default: every other dataset of the target's domain).
    sources: list[str] | None = None
    #: Further tasks of the same domain left out exactly like the target (dataset and
    #: groups), so one backbone serves several targets leak-free.
    also_exclude: list[str] = field(default_factory=list)
    arch: str = "iomtnet_s"
    img_size: int = 128
    epochs: int = 15
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.05
    seed: int = 0
    threads: int = 1
    max_crops_per_class: int = 300


@dataclass
class SourceData:
    """One source dataset, filtered and loaded: images [N, C, H, W] with class indices."""

    name: str
    labels: tuple[str, ...]
    images: NDArray[np.uint8]
    targets: NDArray[np.int64]
    groups: list[str]
    dropped_images: int = 0
    dropped_groups: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Sizes and dropped rows, for ``pretrain.json``."""
        counts = np.bincount(self.targets, minlength=len(self.labels)).tolist()
        return {
            "name": self.name,
            "labels": list(self.labels),
            "images": len(self.targets),
            "groups": len(set(self.groups)),
            "per_class": dict(zip(self.labels, counts, strict=True)),
            "dropped_images": self.dropped_images,
            "dropped_groups": len(self.dropped_groups),
        }


def default_sources(target: str, also_exclude: Sequence[str] = ()) -> list[str]:
    """Every dataset of ``target``'s domain except the target (and ``also_exclude``)."""
    domain = target.split("/", 1)[0]
    if domain not in DOMAIN_SOURCES:
        raise ValueError(f"no pretraining domain for {target!r}; known: {sorted(DOMAIN_SOURCES)}")
    left_out = {target, *also_exclude}
    return [s for s in DOMAIN_SOURCES[domain] if s not in left_out]


def excluded_targets(config: PretrainConfig) -> list[str]:
    """The tasks a backbone may be fine-tuned for: the target and ``also_exclude``."""
    return [config.target, *[t for t in config.also_exclude if t != config.target]]


def leave_target_out(manifest: Manifest, target_groups: set[str]) -> tuple[Manifest, list[str]]:
    """Drop the rows whose ``group_id`` is in ``target_groups``.

    Returns
    -------
    tuple
        The filtered manifest and the sorted dropped group ids.
    """
    keep = [i for i, g in enumerate(manifest.groups) if g not in target_groups]
    dropped = sorted({g for g in manifest.groups if g in target_groups})
    return manifest.subset(keep), dropped


def box_crops(
    manifest: Manifest,
    channels: int,
    size: int,
    max_per_class: int,
    seed: int = 0,
    classes: Sequence[str] = ("RBC", "WBC", "Platelets"),
) -> tuple[NDArray[np.uint8], list[str], list[str]]:
    """Square crops (10 % margin) of the labelled boxes, resized to ``size``.

    Boxes are read with the detection reader (:func:`~iomt.vision.detection.data.parse_boxes`,
    labels from ``classes``); boxes under 2 px a side are skipped. At most ``max_per_class``
    crops per box label, drawn at random (``seed``) over all rows.

    Returns
    -------
    tuple
        Crops [N, C, size, size], their labels and the ``group_id`` of their source image.
    """
    from PIL import Image

    from iomt.vision.detection.data import parse_boxes

    boxes: list[tuple[int, str, list[float]]] = []
    for i, rec in enumerate(manifest.records):
        parsed = parse_boxes(rec.extra.get("boxes", ""), classes)
        for (x1, y1, x2, y2), label in zip(parsed.boxes.tolist(), parsed.labels, strict=True):
            if x2 - x1 >= 2 and y2 - y1 >= 2:
                boxes.append((i, classes[int(label) - 1], [x1, y1, x2, y2]))
    rng = np.random.default_rng(seed)
    chosen: list[tuple[int, str, list[float]]] = []
    for label in sorted({b[1] for b in boxes}):
        items = [b for b in boxes if b[1] == label]
        order = rng.permutation(len(items))[:max_per_class]
        chosen += [items[j] for j in sorted(order.tolist())]
    chosen.sort(key=lambda b: b[0])
    out = np.empty((len(chosen), channels, size, size), dtype=np.uint8)
    cache: dict[int, Any] = {}
    for n, (i, _, (x1, y1, x2, y2)) in enumerate(chosen):
        if i not in cache:
            cache.clear()
            cache[i] = load_image(manifest.root / manifest.records[i].file, channels)
        img = cache[i]
        half = max(x2 - x1, y2 - y1) * 0.55
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        h, w = img.shape[1:]
        left, top = max(0, int(cx - half)), max(0, int(cy - half))
        right, bottom = min(w, int(np.ceil(cx + half))), min(h, int(np.ceil(cy + half)))
        crop = img[:, top:bottom, left:right]
        pil = Image.fromarray(crop[0] if channels == 1 else crop.transpose(1, 2, 0))
        pil = pil.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(pil, dtype=np.uint8)
        out[n] = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
    groups = [manifest.records[b[0]].group_id for b in chosen]
    return out, [b[1] for b in chosen], groups


def load_source(
    root: Path,
    name: str,
    channels: int,
    size: int,
    target_groups: set[str],
    *,
    max_crops_per_class: int = 300,
    seed: int = 0,
) -> SourceData:
    """Read source ``name`` under ``root``, drop the target's groups, load its images."""
    manifest = read_manifest(root / name)
    kept, dropped = leave_target_out(manifest, target_groups)
    n_dropped = len(manifest) - len(kept)
    if name in BOX_SOURCES:
        from iomt.vision.detection.tasks import get_detection_task

        classes = get_detection_task(name).labels
        images, labels, groups = box_crops(kept, channels, size, max_crops_per_class, seed, classes)
    else:
        images, labels, groups = load_images(kept, channels, size), kept.labels, kept.groups
    classes = tuple(sorted(set(labels)))
    return SourceData(
        name, classes, images, encode_labels(labels, classes), groups, n_dropped, dropped
    )


def _class_balanced(targets: NDArray[np.int64], mass: float) -> NDArray[np.float64]:
    """Weights giving every class of one source equal mass, ``mass`` in total."""
    counts = np.bincount(targets)
    n_classes = int((counts > 0).sum())
    return np.asarray(mass / (n_classes * counts[targets]), dtype=np.float64)


def pretrain(config: PretrainConfig, *, command: str | None = None) -> dict[str, Any]:
    """Multi-task pretraining on the other datasets of the target's domain.

    Every batch mixes the sources (each source has equal sampling mass, each class equal
    mass within its source); the loss is the cross-entropy of each image under its own
    source's head. Writes ``backbone.pt`` and ``pretrain.json`` under ``config.out``.

    Returns
    -------
    dict
        The content of ``pretrain.json``.

    Raises
    ------
    FileNotFoundError
        If the target's manifest is missing (its groups cannot be excluded).
    ValueError
        If a source is the target itself or no source is available.
    """
    import torch

    from iomt.vision.models import build_model
    from iomt.vision.train import seed_everything, weighted_loader
    from iomt.vision.transforms import channel_stats

    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    spec = get_task(config.target)
    root = Path(config.data_root)
    targets_out = excluded_targets(config)
    for other in targets_out[1:]:
        if get_task(other).channels != spec.channels:
            raise ValueError(f"{other} and {config.target} differ in input channels")
    names = (
        config.sources
        if config.sources is not None
        else default_sources(config.target, config.also_exclude)
    )
    left_in = sorted(set(names) & set(targets_out))
    if left_in:
        raise ValueError(f"{left_in} cannot be one of its own sources")
    target_dir = Path(config.target_data) if config.target_data else root / config.target
    target_groups = set(read_manifest(target_dir).groups)
    for other in targets_out[1:]:
        target_groups |= set(read_manifest(root / other).groups)
    t0 = time.perf_counter()
    sources: list[SourceData] = []
    skipped: dict[str, str] = {}
    for name in names:
        if not (root / name / "manifest.csv").exists():
            log.warning("source %s not found under %s: skipped", name, root)
            skipped[name] = "not found"
            continue
        src = load_source(
            root,
            name,
            spec.channels,
            config.img_size,
            target_groups,
            max_crops_per_class=config.max_crops_per_class,
            seed=config.seed,
        )
        if len(src.targets) == 0 or len(src.labels) < 2:
            log.warning("source %s has fewer than two classes after filtering: skipped", name)
            skipped[name] = f"fewer than two classes after dropping {src.dropped_images} rows"
            continue
        log.info("source %s: %s", name, src.summary())
        sources.append(src)
    if not sources:
        raise ValueError(f"no pretraining source available for {config.target} under {root}")
    log.info("loaded %d sources in %.1fs", len(sources), time.perf_counter() - t0)

    offsets = np.cumsum([0] + [len(s.labels) for s in sources])
    images = np.concatenate([s.images for s in sources])
    targets = np.concatenate([s.targets + offsets[k] for k, s in enumerate(sources)])
    weights = np.concatenate([_class_balanced(s.targets, 1.0 / len(sources)) for s in sources])
    mean, std = channel_stats(images)
    loader = weighted_loader(
        spec, images, targets, weights, (mean, std), config.batch_size, config.seed
    )
    model = build_model(config.arch, 1, spec.channels)
    heads = torch.nn.ModuleList(torch.nn.Linear(model.num_features, len(s.labels)) for s in sources)
    params = list(model.features.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps = max(1, len(loader)) * config.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, total_steps=steps, pct_start=0.15
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    source_of = torch.as_tensor(np.repeat(np.arange(len(sources)), np.diff(offsets)))
    offsets_t = torch.as_tensor(offsets[:-1])
    history: list[dict[str, Any]] = []
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    t_train = time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        heads.train()
        t_ep, total, seen = time.perf_counter(), 0.0, 0
        correct = np.zeros(len(sources))
        count = np.zeros(len(sources))
        for x, y in loader:
            emb = model.dropout(model.embed(x))
            which = source_of[y]
            loss = torch.zeros(())
            for k in torch.unique(which).tolist():
                mask = which == k
                logits = heads[k](emb[mask])
                local = y[mask] - offsets_t[k]
                loss = loss + loss_fn(logits, local) * mask.sum() / len(y)
                correct[k] += float((logits.argmax(1) == local).sum())
                count[k] += float(mask.sum())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(y)
            seen += len(y)
        entry = {
            "epoch": epoch,
            "train_loss": round(total / max(seen, 1), 4),
            "train_accuracy": {
                s.name: round(float(correct[k] / count[k]), 4) if count[k] else None
                for k, s in enumerate(sources)
            },
            "seconds": round(time.perf_counter() - t_ep, 1),
        }
        history.append(entry)
        log.info("pretrain epoch %d: %s", epoch, entry)
    torch.save(model.features.state_dict(), out / BACKBONE_FILE)
    from iomt.vision.export import sha256_file

    meta = {
        "config": asdict(config),
        "target": config.target,
        "targets": targets_out,
        "arch": config.arch,
        "channels": spec.channels,
        "input_size": config.img_size,
        "mean": mean,
        "std": std,
        "sources": [s.summary() for s in sources],
        "skipped_sources": skipped,
        "target_groups_excluded": len(target_groups),
        "history": history,
        "train_seconds": round(time.perf_counter() - t_train, 1),
        "backbone_sha256": sha256_file(out / BACKBONE_FILE),
        "command": command,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta


def backbone_paths(init: str | Path) -> tuple[Path, Path | None]:
    """``(backbone.pt, pretrain.json or None)`` for a pretraining folder or a backbone file."""
    path = Path(init)
    weights = path / BACKBONE_FILE if path.is_dir() else path
    meta = weights.parent / META_FILE
    return weights, meta if meta.exists() else None


def load_backbone(model: Any, init: str | Path, task: str, arch: str) -> dict[str, Any]:
    """Load a pretrained backbone into ``model.features`` (the classifier stays as it is).

    Parameters
    ----------
    model
        A :class:`~iomt.vision.models.CamNet`.
    init
        A pretraining folder (``backbone.pt`` + ``pretrain.json``) or a backbone file.
    task, arch
        The fine-tuning task and architecture; a backbone pretrained for another target
        (it may have seen this task's patients) or another architecture is refused.

    Returns
    -------
    dict
        What the run records: path, backbone sha256, and from ``pretrain.json`` (if present)
        the target, the sources and the pretraining command.

    Raises
    ------
    ValueError
        If ``pretrain.json`` names another target or architecture.
    """
    import torch

    from iomt.vision.export import sha256_file

    weights, meta_path = backbone_paths(init)
    meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path else {}
    left_out = meta.get("targets") or [meta.get("target")]
    if meta and task not in left_out:
        raise ValueError(
            f"{weights} was pretrained leaving out {left_out}, not {task!r}: "
            "it may have seen this task's patients"
        )
    if meta and meta.get("arch") != arch:
        raise ValueError(f"{weights} is a {meta.get('arch')} backbone, not {arch}")
    state = torch.load(weights, weights_only=True)
    model.features.load_state_dict(state)
    log.info("loaded pretrained backbone %s", weights)
    return {
        "path": Path(init).as_posix(),
        "sha256": sha256_file(weights),
        "target": meta.get("target"),
        "targets": left_out if meta else None,
        "sources": [s["name"] for s in meta.get("sources", [])],
        "source_images": sum(int(s["images"]) for s in meta.get("sources", [])),
        "pretrain_epochs": (meta.get("config") or {}).get("epochs"),
        "command": meta.get("command"),
    }
