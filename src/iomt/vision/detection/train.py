"""Train a detector from scratch on a grouped split, with checkpoints and resume.

The split is train / val / test by ``group_id`` (:func:`iomt.vision.data.train_val_test_split`,
stratified by the set of classes present in each image). Each epoch ends with a checkpoint
(``last.pt``); the epoch with the best validation mAP@0.5 (ties: mAP@0.5:0.95) is kept as
``best.pt``. A run stops at ``epochs`` or when ``budget_min`` CPU minutes (all threads) or
``wall_min`` wall minutes are spent, whichever is first (the cosine schedule follows the
budget, so it still anneals), and ``resume=True`` continues from ``last.pt``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from iomt.vision.data import train_val_test_split
from iomt.vision.detection.data import BoxData, BoxDataset, collate, load_box_data, stratum_labels
from iomt.vision.detection.evaluate import Detections, coco_metrics
from iomt.vision.detection.models import build_detector
from iomt.vision.detection.tasks import DetectionTask, get_detection_task
from iomt.vision.detection.transforms import train_transform
from iomt.vision.transforms import channel_stats

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved in every checkpoint)."""

    task: str
    data: str
    arch: str = "fcos_mobilenet_v3"
    epochs: int = 30
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_iters: int = 100
    img_size: int = 256
    seed: int = 0
    test_frac: float = 0.2
    val_frac: float = 0.15
    budget_min: float = 0.0  # CPU minutes of this process (all threads); 0 = no limit
    wall_min: float = 0.0  # wall-clock minutes of this run (resumes included); 0 = no limit
    eval_every: int = 2
    threads: int = 2


@dataclass
class SplitIndices:
    """Row indices of the manifest on each side."""

    train: list[int]
    val: list[int]
    test: list[int]


@dataclass
class History:
    """Per-epoch log: loss, validation mAP@0.5 / mAP, wall and CPU seconds spent so far."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_map50: float = -1.0
    best_map: float = -1.0
    best_epoch: int = -1
    seconds: float = 0.0
    cpu_seconds: float = 0.0


def make_split(data: BoxData, task: DetectionTask, cfg: TrainConfig) -> SplitIndices:
    """Grouped, stratified train / val / test indices."""
    tr, va, te = train_val_test_split(
        data.manifest.groups, stratum_labels(data, task), cfg.test_frac, cfg.val_frac, cfg.seed
    )
    return SplitIndices(sorted(map(int, tr)), sorted(map(int, va)), sorted(map(int, te)))


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, batch_size: int = 4) -> list[Detections]:
    """Run ``model`` (eval mode) on uint8 images [N, C, H, W]; one :class:`Detections` each."""
    model.eval()
    out: list[Detections] = []
    for start in range(0, len(images), batch_size):
        batch = [torch.from_numpy(im).float() / 255.0 for im in images[start : start + batch_size]]
        for det in model(batch):
            out.append(
                Detections(
                    det["boxes"].numpy().astype(np.float32),
                    det["scores"].numpy().astype(np.float32),
                    det["labels"].numpy().astype(np.int64),
                )
            )
    return out


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically (temp file + rename), so a killed run never leaves half a file."""
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`train_detector`."""
    return dict(torch.load(path, map_location="cpu", weights_only=False))


def model_from_checkpoint(ckpt: dict[str, Any], score_thresh: float = 0.05) -> nn.Module:
    """Rebuild the detector of a checkpoint and load its weights (eval mode)."""
    cfg = ckpt["config"]
    task = get_detection_task(cfg["task"])
    model = build_detector(
        cfg["arch"],
        len(task.labels),
        in_channels=task.channels,
        img_size=cfg["img_size"],
        mean=ckpt["mean"],
        std=ckpt["std"],
        score_thresh=score_thresh,
    )
    model.load_state_dict(ckpt["model"])
    return model.eval()


def _lr_factor(cfg: TrainConfig, it: int, total: int, spent: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 5 %.

    Progress is the larger of the iteration fraction and ``spent``, the fraction of the
    CPU or wall budget used, so a run cut by its budget still ends annealed.
    """
    if it < cfg.warmup_iters:
        return 0.1 + 0.9 * it / cfg.warmup_iters
    frac = min(1.0, max(spent, (it - cfg.warmup_iters) / max(1, total - cfg.warmup_iters)))
    return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * frac))


def _budget_spent(cfg: TrainConfig, wall_s: float, cpu_s: float) -> float:
    """Fraction (0-1+) of the tighter of the CPU and wall budgets already used."""
    fracs = [0.0]
    if cfg.budget_min:
        fracs.append(cpu_s / (cfg.budget_min * 60))
    if cfg.wall_min:
        fracs.append(wall_s / (cfg.wall_min * 60))
    return max(fracs)


def train_detector(
    cfg: TrainConfig,
    out_dir: Path,
    *,
    resume: bool = False,
    on_step: Callable[[int, int, float], None] | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> Path:
    """Train; returns the path of ``best.pt`` (or ``last.pt`` if no epoch was validated).

    Parameters
    ----------
    cfg
        The run's configuration.
    out_dir
        Folder for ``last.pt``, ``best.pt`` and ``history.json``.
    resume
        Continue from ``out_dir/last.pt`` (its config wins, except ``epochs``/``budget_min``).
    on_step, on_epoch
        Progress callbacks: ``(step, steps_per_epoch, loss)`` and the epoch's log row.
    """
    torch.set_num_threads(cfg.threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    ckpt = load_checkpoint(last_path) if resume and last_path.exists() else None
    if ckpt is not None:
        saved = ckpt["config"]
        limits = {"epochs": cfg.epochs, "budget_min": cfg.budget_min, "wall_min": cfg.wall_min}
        cfg = TrainConfig(**{**saved, **limits})
    task = get_detection_task(cfg.task)
    torch.manual_seed(cfg.seed)
    data = load_box_data(cfg.data, task)
    split = make_split(data, task, cfg) if ckpt is None else SplitIndices(**ckpt["split"])
    train, val = data.subset(split.train), data.subset(split.val)
    mean, std = (ckpt["mean"], ckpt["std"]) if ckpt else channel_stats(train.images)
    model = build_detector(
        cfg.arch,
        len(task.labels),
        in_channels=task.channels,
        img_size=cfg.img_size,
        mean=mean,
        std=std,
    )
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    history = History()
    start_epoch = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        history = History(**ckpt["history"])
        start_epoch = int(ckpt["epoch"]) + 1
        log.info("resumed from %s at epoch %d", last_path, start_epoch)
    log.info(
        "%s: %d train / %d val / %d test images (groups disjoint)",
        cfg.task,
        len(split.train),
        len(split.val),
        len(split.test),
    )
    gen = torch.Generator().manual_seed(cfg.seed + start_epoch)
    dataset: Any = BoxDataset(train, train_transform(task))
    loader: Any = torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=True,
        collate_fn=collate,
        generator=gen,
        drop_last=True,
    )
    total_iters = cfg.epochs * len(loader)
    began = time.monotonic() - history.seconds
    cpu_began = time.process_time() - history.cpu_seconds
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        losses: list[float] = []
        for step, (images, targets) in enumerate(loader):
            it = epoch * len(loader) + step
            for group in opt.param_groups:
                spent = _budget_spent(
                    cfg, time.monotonic() - began, time.process_time() - cpu_began
                )
                group["lr"] = cfg.lr * _lr_factor(cfg, it, total_iters, spent)
            loss_dict = model(images, targets)
            loss: Any = sum(loss_dict.values())
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            losses.append(float(loss.detach()))
            if on_step is not None:
                on_step(step + 1, len(loader), losses[-1])
        row: dict[str, float] = {"epoch": epoch, "loss": float(np.mean(losses))}
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            res = coco_metrics(val.targets, predict(model, val.images), task.labels)
            row |= {"val_map50": res.map50, "val_map": res.map}
        history.seconds = time.monotonic() - began
        history.cpu_seconds = time.process_time() - cpu_began
        row["seconds"] = history.seconds
        row["cpu_seconds"] = history.cpu_seconds
        history.epochs.append(row)
        payload = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "epoch": epoch,
            "config": asdict(cfg),
            "split": asdict(split),
            "history": asdict(history),
            "mean": list(mean),
            "std": list(std),
            "labels": list(task.labels),
            "data_hash": data.manifest.data_hash(split.train + split.val),
            "split_files": {
                side: [data.manifest.records[i].file for i in getattr(split, side)]
                for side in ("train", "val", "test")
            },
        }
        score = (row.get("val_map50", -1.0), row.get("val_map", -1.0))
        if "val_map50" in row and score > (history.best_map50, history.best_map):
            history.best_map50, history.best_map, history.best_epoch = (*score, epoch)
            payload["history"] = asdict(history)
            save_checkpoint(best_path, payload)
        save_checkpoint(last_path, payload)
        (out_dir / "history.json").write_text(json.dumps(asdict(history), indent=1))
        if on_epoch is not None:
            on_epoch(row)
        if _budget_spent(cfg, history.seconds, history.cpu_seconds) >= 1.0:
            log.info("budget reached after epoch %d", epoch)
            break
    return best_path if best_path.exists() else last_path
