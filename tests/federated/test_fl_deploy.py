"""A real federation on loopback: one TLS server and three site clients as separate processes."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("torch")
pytest.importorskip("cryptography")

CLI = [sys.executable, "-c", "from iomt.cli.app import main; main()"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    """Wait until the server listens (clients then connect at once, without retry backoff)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.communicate()[0][-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("server did not start listening")


def _write_site(folder: Path, labels: tuple[str, str], n: int, seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    with (folder / "manifest.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label", "group_id"])
        for i in range(n):
            y = i % 2
            img = rng.normal(90, 25, (16, 16))
            img[4:12, 4:12] += 100 * y
            name = f"images/{i}.png"
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / name)
            w.writerow([name, labels[y], f"{folder.name}-p{i // 2}"])


@pytest.mark.slow
def test_tls_federation_of_three_processes_completes_rounds_and_registers_model(
    tmp_path: Path,
) -> None:
    from iomt.federated.tls import make_self_signed
    from iomt.inference.registry import ModelRegistry

    tls = make_self_signed(tmp_path / "certs")
    sites = [
        ("xray", "A", ("non-covid", "covid")),
        ("xray", "A", ("non-covid", "covid")),
        ("us", "B", ("healthy", "covid")),
    ]
    for k, (_, _, labels) in enumerate(sites):
        _write_site(tmp_path / f"site{k}", labels, 24, seed=k)
    port = _free_port()
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    common = ["--img-size", "16"]
    server = subprocess.Popen(
        [
            *CLI,
            "fl",
            "server",
            "--address",
            f"127.0.0.1:{port}",
            "--rounds",
            "2",
            "--strategy",
            "clustered",
            "--min-clients",
            "3",
            "--certs",
            str(tmp_path / "certs"),
            "--out",
            str(tmp_path / "server"),
            "--register",
            str(tmp_path / "models"),
            "--model-id",
            "fl-test",
            *common,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    _wait_for_port(port, server)
    clients = [
        subprocess.Popen(
            [
                *CLI,
                "fl",
                "client",
                "--server",
                f"127.0.0.1:{port}",
                "--data",
                str(tmp_path / f"site{k}"),
                "--modality",
                modality,
                "--cluster",
                cluster,
                "--root-cert",
                str(tls.ca_cert),
                "--site-id",
                str(k),
                *common,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
        for k, (modality, cluster, _) in enumerate(sites)
    ]
    procs = [server, *clients]
    try:
        server_out, _ = server.communicate(timeout=85)
        outs = [c.communicate(timeout=20)[0] for c in clients]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert server.returncode == 0, server_out[-3000:]
    for c, out in zip(clients, outs, strict=True):
        assert c.returncode == 0, out[-3000:]

    fed = json.loads((tmp_path / "server" / "federation.json").read_text())
    assert fed["tls"] is True
    assert [r["round"] for r in fed["rounds"]] == [1, 2]
    assert all(np.isfinite(r["fed_loss"]) for r in fed["rounds"])
    assert fed["best_round"] in (1, 2)

    registry = ModelRegistry.scan(tmp_path / "models")
    assert sorted(m.id for m in registry) == ["fl-test-us", "fl-test-xray"]
    import onnxruntime as ort

    model = registry.get("fl-test-xray")
    sess = ort.InferenceSession(str(model.verified_path()), providers=["CPUExecutionProvider"])
    probs, cam = sess.run(["probs", "cam"], {"image": np.zeros((2, 1, 16, 16), np.float32)})
    assert probs.shape == (2, 2) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert cam.shape[:2] == (2, 2)
