"""Multi-seed aggregation of the FL experiment: figures by hand, CLI parsing, resume."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from iomt.cli.fl import app
from iomt.federated.experiment import ExperimentConfig, table_rows
from iomt.federated.sweep import (
    _reusable,
    aggregate,
    all_covid_f1,
    parse_seeds,
    seed_config,
    t_interval,
)
from iomt.federated.task import SiteData

#: Two-sided 97.5 % Student-t quantiles (df 1, 2), from a printed t-table.
T975 = {1: 12.7062, 2: 4.3027}


def _rep(f1: float, auc: float | None, adult: tuple[float, float] | None = None) -> dict[str, Any]:
    rep: dict[str, Any] = {
        "auc": auc,
        "macro_f1": f1,
        "per_class": {"covid": {"f1": f1}, "non-covid": {"f1": 1.0}},
    }
    if adult is not None:
        rep["subsets"] = {"adult": _rep(*adult)}
    return rep


def _seed(xray: dict[str, tuple[float, float]], adult: float = 0.5) -> dict[str, Any]:
    """One seed's result: per method (X-ray COVID F1, AUC); US fixed; adults = F1 - ``adult``."""
    return {
        "methods": {
            m: {
                "table": {
                    "xray": _rep(f1, auc, (f1 - adult, auc)),
                    "us": _rep(0.5, None if m == "fedavg" else 0.9),
                }
            }
            for m, (f1, auc) in xray.items()
        }
    }


PER_SEED = {
    0: _seed({"specialised": (0.9, 0.95), "fedavg": (0.8, 0.9), "clustered": (0.85, 0.92)}),
    1: _seed({"specialised": (0.8, 0.95), "fedavg": (0.7, 0.9), "clustered": (0.8, 0.92)}),
    2: _seed({"specialised": (1.0, 0.95), "fedavg": (0.6, 0.9), "clustered": (0.9, 0.92)}),
}


def test_t_interval_by_hand() -> None:
    stat = t_interval([0.8, 0.9, 1.0, float("nan")])
    half = T975[2] * 0.1 / math.sqrt(3)
    assert stat["n"] == 3 and stat["mean"] == pytest.approx(0.9)
    assert stat["sd"] == pytest.approx(0.1)
    assert stat["ci"] == pytest.approx([0.9 - half, 0.9 + half], abs=1e-4)
    assert t_interval([0.7])["ci"] is None and t_interval([])["mean"] is None


def test_aggregate_by_hand() -> None:
    res = aggregate(PER_SEED)
    assert res["seeds"] == [0, 1, 2]
    assert list(res["methods"]) == ["specialised", "fedavg", "clustered"]
    spec = res["methods"]["specialised"]["xray"]["covid_f1"]
    assert spec["mean"] == pytest.approx(0.9) and spec["values"] == [0.9, 0.8, 1.0]
    assert spec["ci"][0] == pytest.approx(0.9 - T975[2] * 0.1 / math.sqrt(3), abs=1e-4)
    # the adult subset is a test set of its own: F1 - 0.5 on every seed
    adult = res["methods"]["fedavg"]["xray_adult"]["covid_f1"]
    assert adult["mean"] == pytest.approx(0.2)
    # paired differences per seed: clustered - fedavg = 0.05, 0.10, 0.30
    d = res["differences"]["clustered-fedavg"]["xray"]["covid_f1"]
    assert d["values"] == pytest.approx([0.05, 0.10, 0.30])
    sd = math.sqrt(sum((v - 0.15) ** 2 for v in (0.05, 0.10, 0.30)) / 2)  # 0.1323
    assert d["mean"] == pytest.approx(0.15)
    assert d["ci"] == pytest.approx(
        [0.15 - T975[2] * sd / math.sqrt(3), 0.15 + T975[2] * sd / math.sqrt(3)], abs=1e-4
    )
    # specialised - clustered = 0.05, 0.0, 0.10; constant AUC gap -> zero-width interval
    d2 = res["differences"]["specialised-clustered"]
    assert d2["xray"]["covid_f1"]["mean"] == pytest.approx(0.05)
    assert d2["xray"]["auc"]["ci"] == pytest.approx([0.03, 0.03])
    # a missing AUC (fedavg US) is dropped, not counted as 0
    assert res["methods"]["fedavg"]["us"]["auc"]["n"] == 0
    assert res["differences"]["clustered-fedavg"]["us"]["auc"]["values"] == [None] * 3


class _Brightness(torch.nn.Module):
    """Logits from the image mean: bright images -> COVID (a model with known outputs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([-m, m], dim=1) * 10


def test_table_rows_reports_adults_beside_all() -> None:
    pixel = np.array([255, 0, 0, 255, 255, 255], dtype=np.uint8)  # -> predicted 1,0,0,1,1,1
    data = SiteData(
        np.broadcast_to(pixel[:, None, None, None], (6, 1, 4, 4)).copy(),
        np.array([1, 1, 0, 0, 0, 0]),
        np.array([f"p{i}" for i in range(6)], dtype=np.str_),
        "xray",
        np.array(["adult"] * 4 + ["pediatric"] * 2, dtype=np.str_),
    )
    rows = table_rows(_Brightness(), {"xray": data}, n_boot=20)["xray"]
    assert rows["n"] == 6
    assert rows["per_class"]["covid"]["f1"] == pytest.approx(2 / 6)  # TP 1, FP 3, FN 1
    adult = rows["subsets"]["adult"]
    assert adult["n"] == 4
    assert adult["per_class"]["covid"]["f1"] == pytest.approx(0.5)  # TP 1, FP 1, FN 1
    # no subset when ages are unknown
    plain = SiteData(data.images, data.targets, data.groups, "xray")
    assert "subsets" not in table_rows(_Brightness(), {"xray": plain}, n_boot=20)["xray"]


def test_all_covid_floor() -> None:
    assert all_covid_f1(3, 4) == pytest.approx(2 * 0.75 / 1.75)
    assert all_covid_f1(0, 4) is None and all_covid_f1(None, None) is None
    per_seed = {
        s: {"methods": {"fedavg": {"table": {"xray": _rep(0.5, 0.5) | {"n": n}}}}}
        for s, n in ((0, 10), (1, 20))
    }
    for s, covid in ((0, 5), (1, 5)):
        per_seed[s]["methods"]["fedavg"]["table"]["xray"]["per_class"]["covid"]["support"] = covid
    floor = aggregate(per_seed)["all_covid_f1"]["xray"]
    assert floor["values"] == pytest.approx([2 * 0.5 / 1.5, 2 * 0.25 / 1.25])


def test_parse_seeds() -> None:
    assert parse_seeds("0-2,7") == [0, 1, 2, 7]
    assert parse_seeds("3, 1,1") == [1, 3]
    with pytest.raises(ValueError):
        parse_seeds("4-2")
    with pytest.raises(ValueError):
        parse_seeds(" , ")


def _save_seeds(out: Path, base: ExperimentConfig) -> None:
    for seed, summary in PER_SEED.items():
        cfg = seed_config(base, seed)
        Path(cfg.out).mkdir(parents=True)
        saved = summary | {"config": asdict(cfg), "seconds": 1.0}
        (Path(cfg.out) / "fl_experiment.json").write_text(json.dumps(saved, default=str))


def test_cli_seeds_reuses_saved_runs(tmp_path: Path) -> None:
    """``--seeds`` parses, finds the saved seeds (same settings), aggregates and plots."""
    methods = "specialised,fedavg,clustered"
    base = ExperimentConfig(
        out=str(tmp_path), methods=tuple(methods.split(",")), local_epochs=5, rounds=8
    )
    _save_seeds(tmp_path, base)
    args = ["experiment", "--seeds", "0-2", "--methods", methods, "--local-epochs", "5"]
    result = CliRunner().invoke(app, [*args, "--rounds", "8", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    agg = json.loads(result.output)
    assert agg["seeds"] == [0, 1, 2]
    assert agg["differences"]["clustered-fedavg"]["xray"]["covid_f1"]["mean"] == pytest.approx(0.15)
    assert (tmp_path / "fl_sweep.json").exists() and (tmp_path / "fl_sweep.png").exists()
    bad = CliRunner().invoke(app, [*args, "--seeds", "x", "--out", str(tmp_path)])
    assert bad.exit_code != 0


def test_saved_run_with_other_settings_is_not_reused(tmp_path: Path) -> None:
    base = ExperimentConfig(out=str(tmp_path), methods=("fedavg",), local_epochs=5)
    _save_seeds(tmp_path, base)
    path = Path(seed_config(base, 0).out) / "fl_experiment.json"
    assert _reusable(path, seed_config(base, 0)) is not None
    other = ExperimentConfig(out=str(tmp_path), methods=("fedavg",), local_epochs=1)
    assert _reusable(path, seed_config(other, 0)) is None
    more = ExperimentConfig(out=str(tmp_path), methods=("fedavg", "cfl"), local_epochs=5)
    assert _reusable(path, seed_config(more, 0)) is None  # cfl was not run
