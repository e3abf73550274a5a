"""Train one image classifier on a shared-layout dataset, with a grouped held-out test.

The split is grouped by ``group_id`` into train / validation / test (test patients are never
seen in training or model selection). Validation picks the best epoch (early stopping) and the
frozen decision threshold. Class imbalance is handled by a weighted sampler; for
``chest/cxr-covid`` the sampler also balances age groups within each label, so the children
of the non-COVID class cannot dominate it (the age shortcut), and model selection and the
threshold use adult validation images only. With ``init`` the model's ``features`` start
from a leave-target-out pretrained backbone (:mod:`iomt.vision.pretrain`, recorded as
``init`` in ``run.json``); without it, from random weights.

A run folder holds ``config.json``, ``split.json``, ``log.jsonl`` (one line per epoch),
``last.pt`` (checkpoint every epoch, for ``--resume``), ``best.pt``, ``run.json`` (what the
exporter needs), ``eval.json`` (held-out report) and ``test_predictions.npz``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from iomt.vision.data import (
    Manifest,
    encode_labels,
    load_images,
    read_manifest,
    train_val_test_split,
)
from iomt.vision.evaluate import (
    Predictions,
    choose_threshold,
    evaluate_predictions,
    predict,
    selection_score,
)
from iomt.vision.tasks import TaskSpec, get_task

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as ``config.json``)."""

    task: str
    data: str
    out: str
    arch: str = "iomtnet_s"
    img_size: int = 128
    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.05
    ema_decay: float = 0.95
    patience: int = 10
    seed: int = 0
    test_frac: float = 0.2
    val_frac: float = 0.15
    threads: int = 1
    balance_age: bool = True
    balance_groups: bool = False
    #: Train only on rows whose manifest column has this value, e.g. ``{"age_group": "adult"}``
    #: (validation and test stay as split, so runs with and without it compare directly).
    train_only: dict[str, str] | None = None
    n_boot: int = 1000
    #: Pretrained backbone (``iomt vision pretrain`` folder or ``backbone.pt``) loaded into
    #: the model's ``features`` before training; ``None`` = from scratch.
    init: str | None = None


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def sample_weights(
    targets: NDArray[np.int64],
    age_groups: Sequence[str] | NDArray[np.str_] | None = None,
    groups: Sequence[str] | NDArray[np.str_] | None = None,
) -> NDArray[np.float64]:
    """Per-sample weights giving every class equal mass (and every age group within a class).

    With ``age_groups``, a class's mass is split equally between the age groups present in
    it, so e.g. 797 pediatric and 100 adult non-COVID images weigh the same in total. With
    ``groups``, a stratum's mass is split equally between its groups (patients, papers,
    videos), so one patient with 26 slices weighs as much as one with a single slice.
    """
    n = len(targets)
    ages = [""] * n if age_groups is None else [str(a) for a in age_groups]
    grp = [str(i) for i in range(n)] if groups is None else [str(g) for g in groups]
    keys = list(zip(targets.tolist(), ages, strict=True))
    strata = Counter(keys)
    ages_per_class = Counter(t for t, _ in strata)
    group_size = Counter(zip(keys, grp, strict=True))
    groups_per_stratum = Counter(k for k, _ in group_size)
    return np.array(
        [
            1.0 / (ages_per_class[k[0]] * groups_per_stratum[k] * group_size[(k, g)])
            for k, g in zip(keys, grp, strict=True)
        ],
        dtype=np.float64,
    )


def weighted_loader(
    spec: TaskSpec,
    images: NDArray[np.uint8],
    targets: NDArray[np.int64],
    weights: NDArray[np.float64],
    norm: tuple[list[float], list[float]],
    batch_size: int,
    seed: int,
) -> Any:
    """Augmented training batches drawn with replacement by ``weights`` (len(targets) a pass).

    Augmentation follows the task's modality: blood smears are flipped both ways and rotated
    freely, radiology images flipped left-right and rotated by at most 10 degrees.
    """
    import torch
    from torch.utils.data import DataLoader, WeightedRandomSampler

    from iomt.vision.data import ImageDataset
    from iomt.vision.transforms import train_transform

    blood = spec.modality.value == "SM"
    transform = train_transform(*norm, hflip=True, vflip=blood, degrees=180.0 if blood else 10.0)
    sampler = WeightedRandomSampler(
        weights.tolist(),
        num_samples=len(targets),
        replacement=True,
        generator=torch.Generator().manual_seed(seed),
    )
    dataset = ImageDataset(images, targets, transform)
    return DataLoader(cast(Any, dataset), batch_size=batch_size, sampler=sampler, drop_last=True)


def _aux(manifest: Manifest, idx: NDArray[np.int64], attr: str) -> NDArray[np.str_] | None:
    values = [getattr(manifest.records[i], attr) for i in idx]
    return np.array(values, dtype=np.str_) if any(values) else None


def _predictions(
    model: Any,
    manifest: Manifest,
    images: NDArray[np.uint8],
    targets: NDArray[np.int64],
    idx: NDArray[np.int64],
    mean: list[float],
    std: list[float],
) -> Predictions:
    probs, emb = predict(model, images[idx], mean, std)
    return Predictions(
        probs,
        targets[idx],
        np.array([manifest.records[i].group_id for i in idx], dtype=np.str_),
        emb,
        _aux(manifest, idx, "age_group"),
        _aux(manifest, idx, "finding"),
    )


def _split(
    config: TrainConfig,
    manifest: Manifest,
    out: Path,
    given: dict[str, NDArray[np.int64]] | None = None,
) -> dict[str, NDArray[np.int64]]:
    """The given split, the saved split of a resumed run, or a new grouped split (saved)."""
    path = out / "split.json"
    files = [r.file for r in manifest.records]
    if given is not None:
        path.write_text(json.dumps({k: [files[i] for i in v] for k, v in given.items()}, indent=0))
        return given
    if path.exists():
        saved = json.loads(path.read_text())
        index = {f: i for i, f in enumerate(files)}
        return {k: np.array([index[f] for f in v], dtype=np.int64) for k, v in saved.items()}
    tr, va, te = train_val_test_split(
        manifest.groups, manifest.labels, config.test_frac, config.val_frac, config.seed
    )
    split = {"train": tr, "val": va, "test": te}
    path.write_text(json.dumps({k: [files[i] for i in v] for k, v in split.items()}, indent=0))
    return split


def _restrict_train(
    split: dict[str, NDArray[np.int64]], manifest: Manifest, where: dict[str, str], out: Path
) -> dict[str, NDArray[np.int64]]:
    """Drop training rows that do not match ``where``; record the result in split.json."""

    def value(i: int, column: str) -> str:
        rec = manifest.records[i]
        return (
            str(getattr(rec, column))
            if column in ("label", "age_group", "finding")
            else (rec.extra.get(column, ""))
        )

    keep = [i for i in split["train"] if all(value(int(i), c) == v for c, v in where.items())]
    if not keep:
        raise ValueError(f"no training row matches {where}")
    split = {**split, "train": np.asarray(keep, dtype=np.int64)}
    files = [r.file for r in manifest.records]
    (out / "split.json").write_text(
        json.dumps({k: [files[i] for i in v] for k, v in split.items()}, indent=0)
    )
    return split


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    show_progress: bool = True,
    command: str | None = None,
    split: dict[str, NDArray[np.int64]] | None = None,
) -> dict[str, Any]:
    """Train, select the best epoch on validation, freeze the threshold, test once.

    ``split`` (``train``/``val``/``test`` row indices) overrides the grouped split made from
    the config (cross-validation passes its folds here).

    Returns
    -------
    dict
        The content of ``run.json``: config, labels, normalisation, threshold, data hash,
        validation score and the held-out test report (``test``).
    """
    import torch

    from iomt.vision.models import build_model
    from iomt.vision.transforms import channel_stats

    torch.set_num_threads(config.threads)
    spec = get_task(config.task)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2))

    manifest = read_manifest(config.data)
    targets = encode_labels(manifest.labels, spec.labels)
    split = _split(config, manifest, out, split)
    if config.train_only:
        split = _restrict_train(split, manifest, config.train_only, out)
    log.info("split: %s", {k: len(v) for k, v in split.items()})
    t0 = time.perf_counter()
    images = load_images(manifest, spec.channels, config.img_size)
    log.info("loaded %d images in %.1fs", len(images), time.perf_counter() - t0)
    tr = split["train"]
    mean, std = channel_stats(images[tr])

    ages = _aux(manifest, tr, "age_group") if config.balance_age else None
    groups_tr = [manifest.records[i].group_id for i in tr] if config.balance_groups else None
    weights = sample_weights(targets[tr], ages, groups_tr)
    loader = weighted_loader(
        spec, images[tr], targets[tr], weights, (mean, std), config.batch_size, config.seed
    )

    model = build_model(config.arch, len(spec.labels), spec.channels)
    init = None
    if config.init:
        from iomt.vision.pretrain import load_backbone

        init = load_backbone(model, config.init, config.task, config.arch)
    # exponential moving average of weights and BN statistics: the evaluated model, far
    # steadier on small validation sets than the raw weights
    ema = torch.optim.swa_utils.AveragedModel(
        model,
        multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(config.ema_decay),
        use_buffers=True,
    )
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = max(1, len(loader)) * config.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, total_steps=steps, pct_start=0.15
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    start_epoch, best, best_epoch = 0, -math.inf, -1
    last = out / "last.pt"
    if resume and last.exists():
        ckpt = torch.load(last, weights_only=False)
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["opt"])
        start_epoch, best, best_epoch = ckpt["epoch"] + 1, ckpt["best"], ckpt["best_epoch"]
        if ckpt["sched"].get("total_steps") == steps:
            sched.load_state_dict(ckpt["sched"])
        elif start_epoch < config.epochs:  # --epochs changed: same schedule shape, new length
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt,
                max_lr=config.lr,
                total_steps=steps,
                pct_start=0.15,
                last_epoch=start_epoch * len(loader) - 1,
            )
        torch.set_rng_state(ckpt["torch_rng"])
        log.info("resumed from epoch %d (best %.4f at %d)", start_epoch, best, best_epoch)

    progress = _progress(show_progress)
    with progress:
        task_id = progress.add_task(
            f"{config.task} {config.arch}",
            total=config.epochs * len(loader),
            completed=start_epoch * len(loader),
        )
        for epoch in range(start_epoch, config.epochs):
            model.train()
            t_ep, total, seen = time.perf_counter(), 0.0, 0
            for x, y in loader:
                loss = loss_fn(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                ema.update_parameters(model)
                sched.step()
                total += loss.item() * len(y)
                seen += len(y)
                progress.advance(task_id)
            val = _predictions(ema.module, manifest, images, targets, split["val"], mean, std)
            score = selection_score(spec, val)
            # the first epoch always counts, so best.pt exists even if the score is undefined
            improved = best_epoch < 0 or (not math.isnan(score) and score > best)
            if improved:
                best, best_epoch = score, epoch
                torch.save(ema.module.state_dict(), out / "best.pt")
            torch.save(
                {
                    "model": model.state_dict(),
                    "ema": ema.state_dict(),
                    "opt": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "epoch": epoch,
                    "best": best,
                    "best_epoch": best_epoch,
                    "torch_rng": torch.get_rng_state(),
                },
                last,
            )
            entry = {
                "epoch": epoch,
                "train_loss": total / max(seen, 1),
                "val_score": score,
                "best": best,
                "best_epoch": best_epoch,
                "lr": sched.get_last_lr()[0],
                "seconds": round(time.perf_counter() - t_ep, 1),
            }
            with (out / "log.jsonl").open("a") as fh:
                fh.write(json.dumps(entry) + "\n")
            progress.update(
                task_id, description=f"{config.task} ep{epoch} val={score:.3f} best={best:.3f}"
            )
            if epoch - best_epoch >= config.patience:
                log.info("early stop at epoch %d (best %d)", epoch, best_epoch)
                break

    model.load_state_dict(torch.load(out / "best.pt", weights_only=True))
    val = _predictions(model, manifest, images, targets, split["val"], mean, std)
    threshold = choose_threshold(spec, val)
    test = _predictions(model, manifest, images, targets, split["test"], mean, std)
    test.save(str(out / "test_predictions.npz"))
    report = evaluate_predictions(spec, test, threshold, n_boot=config.n_boot, seed=config.seed)
    val_report = evaluate_predictions(spec, val, threshold, n_boot=200, seed=config.seed)
    (out / "eval.json").write_text(json.dumps(report, indent=2, default=float))
    run = {
        "config": asdict(config),
        "task": spec.name,
        "labels": list(spec.labels),
        "positive_label": spec.positive_label,
        "modality": spec.modality.value,
        "channels": spec.channels,
        "input_size": config.img_size,
        "mean": mean,
        "std": std,
        "threshold": threshold,
        "best_epoch": best_epoch,
        "val_score": best,
        "val": headline(val_report),
        "split_sizes": {
            k: {"images": len(v), "groups": len({manifest.groups[i] for i in v})}
            for k, v in split.items()
        },
        "data_hash": manifest.data_hash(),
        "data_hash_test": manifest.data_hash(split["test"].tolist()),
        "command": command,
        "init": init,
        "test": report,
    }
    (out / "run.json").write_text(json.dumps(run, indent=2, default=float))
    return run


def headline(report: dict[str, Any]) -> dict[str, Any]:
    """The main figures of a report (for logs and the CLI)."""
    keys = ("n", "accuracy", "sensitivity", "specificity", "auc", "macro_f1", "threshold")
    head = {k: report[k] for k in keys if k in report}
    for sub in ("group", "adult"):
        if sub in report:
            head[sub] = {k: report[sub][k] for k in keys if k in report[sub]}
    return head


def _progress(enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not enabled,
    )
