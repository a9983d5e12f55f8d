"""``python -m reproduce probe`` on miniature Fashion-MNIST files: the GPU probe's whole path on the CPU."""

from __future__ import annotations

import struct

import numpy as np
import pandas as pd
import pytest

from reproduce.experiments.probe import PAPER_STEPS, ProbeConfig
from reproduce.runner.notebooks import main


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _fashion(root, n_train=130, n_test=40):
    """FashionMNIST/raw with class-dependent images (a bright row per class), so a net can learn."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
        images[np.arange(n), 2 * labels + 4, :] = 255
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8))
    return root


def test_probe_config_counts_epochs_of_full_batches():
    assert PAPER_STEPS == 93_720
    assert ProbeConfig().epochs() == 101  # 60,000 // 64 = 937 steps an epoch; 100 epochs are 93,700 < 93,720
    assert ProbeConfig(steps=100, train_limit=130).epochs() == 50  # 130 // 64 = 2 steps an epoch
    with pytest.raises(ValueError, match="width must be > 0, got 0"):
        ProbeConfig(width=0)
    with pytest.raises(ValueError, match="no batch of 64"):
        ProbeConfig(train_limit=10).epochs()


def test_probe_runs_on_the_cpu_and_writes_its_figures(tmp_path, capsys):
    data_root = _fashion(tmp_path / "data")
    root = tmp_path / "repo"
    root.mkdir()
    status = main(["probe", "--root", str(root), "--data-root", str(data_root), "--no-verify", "--device", "cpu",
                   "--steps", "6", "--width", "0.0625", "--draws", "1", "--train-limit", "130"])
    out = capsys.readouterr().out
    assert status == 0
    figures = root / "figures" / "gpu-probe"
    claims = pd.read_csv(figures / "probe-claims.csv")
    assert len(claims) >= 1 and set(claims["verdict"]) <= {"holds", "does not hold", "not testable"}
    assert all(c in out for c in claims["claim"])
    history = pd.read_csv(figures / "probe-history.csv")
    assert history["epoch"].max() == 3  # ceil(6 / 2) epochs, each measured
    assert set(history["num_blocks"]) == {24}  # residual-50 of the depth table: 3 + 6 + 12 + 3 blocks
    assert (figures / "probe.png").stat().st_size > 0
    lesion = pd.read_csv(figures / "probe-lesion.csv")
    assert set(lesion["set"]) >= {"all"} and lesion["k"].min() == 1
    assert "residual-50" in out and "blocks: 24" in out


def test_probe_errors_name_the_bad_value(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["probe", "--width", "0"])
    assert info.value.code == 2 and "expected a width multiplier > 0, got '0'" in capsys.readouterr().err
    status = main(["probe", "--root", str(tmp_path), "--data-root", str(tmp_path / "none"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert status == 2 and str(tmp_path / "none" / "FashionMNIST" / "raw") in err
