"""SecAgg+ (Flower's workflow and mod) in Flower's simulation engine gives the weighted mean."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("ray")

from flwr.client import NumPyClient

from iomt.federated.secure import run_secagg_simulation
from iomt.federated.strategies import make_strategy


class _Shift(NumPyClient):
    def __init__(self, i: int) -> None:
        self.i = i

    def fit(self, parameters: Any, config: Any) -> Any:
        return [parameters[0] + (self.i + 1)], self.i + 1, {"train_seconds": 0.0}

    def evaluate(self, parameters: Any, config: Any) -> Any:
        return 0.0, 1, {"accuracy": 1.0}


@pytest.mark.slow
def test_secaggplus_round_returns_the_weighted_mean() -> None:
    strategy = make_strategy("fedavg", n_clients=3, initial=[np.zeros(5, dtype=np.float32)])
    result = run_secagg_simulation(_Shift, 3, strategy, rounds=1)
    # Sites add 1, 2, 3 and hold 1, 2, 3 examples: (1*1 + 2*2 + 3*3) / 6.
    expected = 14 / 6
    # SecAgg+ clips to +-8 and quantises to 2**22 levels: small rounding error only.
    np.testing.assert_allclose(result["parameters"][0], expected, atol=5e-3)
