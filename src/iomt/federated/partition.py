"""Split a shared-layout dataset into hospital sites, by patient group, with optional label skew.

No group (``group_id``) is ever on two sites. Without skew every label's groups are dealt
round-robin after a seeded shuffle, so sites get similar label mixes; with ``label_skew``
(a Dirichlet concentration, small = more skew) each label's groups are spread over the sites
in Dirichlet-drawn proportions, the usual way to simulate non-IID hospitals.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from iomt.vision.data import Manifest


def _majority(groups: Sequence[str], labels: Sequence[str]) -> dict[str, str]:
    by_group: dict[str, Counter[str]] = {}
    for g, lab in zip(groups, labels, strict=True):
        by_group.setdefault(g, Counter())[lab] += 1
    return {g: sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] for g, c in by_group.items()}


def partition_groups(
    groups: Sequence[str],
    labels: Sequence[str],
    n_sites: int,
    *,
    label_skew: float | None = None,
    seed: int = 0,
) -> list[NDArray[np.int64]]:
    """Row indices of each site.

    Parameters
    ----------
    groups, labels
        ``group_id`` and label of every row.
    n_sites
        Number of sites (at most the number of groups).
    label_skew
        Dirichlet concentration for label skew; ``None`` deals groups evenly per label.
    seed
        Seed of the shuffle and the Dirichlet draws.

    Raises
    ------
    ValueError
        If there are fewer groups than sites.
    """
    majority = _majority(groups, labels)
    if n_sites < 1 or n_sites > len(majority):
        raise ValueError(f"n_sites={n_sites} needs 1 <= n_sites <= groups ({len(majority)})")
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[str]] = {}
    for g in sorted(majority):
        by_label.setdefault(majority[g], []).append(g)
    site_of: dict[str, int] = {}
    offset = 0
    for label in sorted(by_label):
        members = list(by_label[label])
        rng.shuffle(members)
        if label_skew is None:
            for i, g in enumerate(members):
                site_of[g] = (i + offset) % n_sites
            offset += len(members)
        else:
            share = rng.dirichlet(np.full(n_sites, float(label_skew)))
            cuts = (np.cumsum(share)[:-1] * len(members)).round().astype(int)
            for site, chunk in enumerate(np.split(np.array(members, dtype=object), cuts)):
                for g in chunk:
                    site_of[str(g)] = site
    _fill_empty_sites(site_of, n_sites, rng)
    rows: list[list[int]] = [[] for _ in range(n_sites)]
    for i, g in enumerate(groups):
        rows[site_of[g]].append(i)
    return [np.array(r, dtype=np.int64) for r in rows]


def _fill_empty_sites(site_of: dict[str, int], n_sites: int, rng: np.random.Generator) -> None:
    """Move one group from the largest site to every site left empty by a skewed draw."""
    for site in range(n_sites):
        counts = Counter(site_of.values())
        if counts.get(site, 0) == 0:
            donor = max(range(n_sites), key=lambda s: counts.get(s, 0))
            candidates = sorted(g for g, s in site_of.items() if s == donor)
            site_of[candidates[int(rng.integers(len(candidates)))]] = site


def write_sites(
    manifest: Manifest, parts: Sequence[NDArray[np.int64]], out: str | Path, prefix: str = "site"
) -> list[Path]:
    """Write ``<out>/<prefix>-<k>/manifest.csv`` per site; images stay where they are.

    The ``file`` column holds absolute paths, so each site folder is a valid shared-layout
    dataset without copying any image.
    """
    out = Path(out)
    folders = []
    for k, idx in enumerate(parts):
        folder = out / f"{prefix}-{k}"
        folder.mkdir(parents=True, exist_ok=True)
        extra_cols = sorted({c for i in idx for c in manifest.records[i].extra})
        cols = ["file", "label", "group_id", "age_group", "finding", *extra_cols]
        with (folder / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=cols)
            writer.writeheader()
            for i in idx:
                r = manifest.records[int(i)]
                row = {
                    "file": str((manifest.root / r.file).resolve()),
                    "label": r.label,
                    "group_id": r.group_id,
                    "age_group": r.age_group,
                    "finding": r.finding,
                }
                row.update({c: r.extra.get(c, "") for c in extra_cols})
                writer.writerow(row)
        folders.append(folder)
    return folders
