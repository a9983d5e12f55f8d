"""Tests of the depth study (claim 2) and early-detection helpers (claim 3)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from reproduce import depth_study as ds
from reproduce.scales import get_scale
from reproduce.training import RunResult, TrainConfig
from reproduce.models import ModelConfig, build_model


@pytest.fixture()
def tmp_root(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRODUCE_ROOT", str(tmp_path))
    torch.set_num_threads(1)
    return tmp_path


def tiny_preset():
    return get_scale("smoke").replace(depths=(4,), epochs=2, train_limit=128, width=1 / 16,
                                      last_epochs=1, repeats=1)


# --------------------------------------------------------------------------- training + tables


def test_depth_sweep_tables_one_row_per_run(tmp_root):
    P = tiny_preset()
    runs, per_epoch = ds.depth_sweep(P, progress=False, device="cpu")
    assert list(runs.columns) == list(ds.RUN_COLUMNS)
    assert list(per_epoch.columns) == list(ds.EPOCH_COLUMNS)
    # 1 dataset x 1 seed x 2 kinds x 1 depth
    assert len(runs) == 2
    assert sorted(runs["kind"]) == ["plain", "residual"]
    assert set(runs["depth"]) == {4}
    assert set(runs["status"]) == {"finished"}
    # one row per run and epoch
    assert len(per_epoch) == 2 * 2
    assert sorted(per_epoch["epoch"].unique()) == [1, 2]
    # the run table summarises the per-epoch table: mean entropy over epochs, last-epoch test acc
    for _, row in runs.iterrows():
        ep = per_epoch[per_epoch["kind"] == row["kind"]].sort_values("epoch")
        assert row["entropy_mean"] == pytest.approx(ep["a_L_entropy"].mean())
        assert row["test_acc"] == pytest.approx(ep["test_acc"].iloc[-1])
        assert row["bundles_last"] == ep["a_L_num_bundles"].iloc[-1]
        assert 1 <= row["bundles_last"] <= P.sample_size
    # every tap was measured: a depth-4 residual net has 1 block -> branch + output taps
    res = ds.train_conv(P, "residual", 4, dataset="digits", seed=0, progress=False, device="cpu")
    assert res.resumed_from == 2  # reused, not retrained
    assert [b["role"] for b in res.history[-1]["bundles"]] == ["branch", "output"]


def test_train_conv_rejects_bad_kind_and_depth(tmp_root):
    P = tiny_preset()
    with pytest.raises(ValueError, match="fnn"):
        ds.train_conv(P, "fnn", 4, dataset="digits", seed=0)
    with pytest.raises(ValueError, match="valid depths"):
        ds.train_conv(P, "plain", 7, dataset="digits", seed=0)
    with pytest.raises(ValueError, match="4 non-negative"):
        ds.train_conv(P, "plain", (1, 2, 3), dataset="digits", seed=0)


def _fake_run(history, status="finished", diverged_epoch=None, kind="plain"):
    mcfg = ModelConfig(kind, 10, 1, 8, (1, 0, 0, 0), width=1 / 16)
    return RunResult(None, status, len(history), build_model(mcfg), history, mcfg, TrainConfig(epochs=3),
                     diverged_epoch=diverged_epoch)


def _rows(entropies, role="output"):
    return [{"tap": f"b{i}", "layer": i, "role": role, "block": i, "stage": 0, "num_bundles": 3,
             "entropy": h, "max_accuracy": 1.0, "conflicting": h > 0} for i, h in enumerate(entropies)]


def test_diverged_run_keeps_its_row_and_status():
    history = [
        {"epoch": 1, "test_acc": 0.5, "train_acc": 0.6, "a_L_entropy": 0.2, "a_L_num_bundles": 10,
         "bundles": _rows([0.0, 0.2]), "seconds": 1.0},
        {"epoch": 2, "diverged": True, "test_acc": None, "seconds": 0.5},
    ]
    row = ds.run_row(_fake_run(history, status="diverged", diverged_epoch=2), dataset="digits", seed=0,
                     last_epochs=3)
    assert row["status"] == "diverged" and row["diverged_epoch"] == 2
    assert row["test_acc"] == pytest.approx(0.5)      # the measured epoch only
    assert row["entropy_mean"] == pytest.approx(0.2)
    assert row["conflicting_last"] == 1               # b1 only
    rows = ds.epoch_rows(_fake_run(history, status="diverged", diverged_epoch=2), dataset="digits", seed=0)
    assert len(rows) == 2 and math.isnan(rows[1]["test_acc"]) and math.isnan(rows[1]["a_L_entropy"])


# --------------------------------------------------------------------------- correlations


def test_correlations_planted_relations():
    h = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    runs = pd.DataFrame({
        "dataset": ["a"] * 5 + ["b"] * 5 + ["c"] * 2,
        "entropy_mean": np.concatenate([h, h, [0.0, 1.0]]),
        # a: exactly linear decreasing -> r = -1; b: monotone increasing but not linear -> rho = +1
        "test_acc": np.concatenate([0.9 - 0.2 * h, np.exp(h), [0.5, 0.4]]),
    })
    corr = ds.correlations(runs).set_index("dataset")
    assert list(corr.reset_index().columns) == list(ds.CORRELATION_COLUMNS)
    assert corr.loc["a", "pearson_r"] == pytest.approx(-1.0)
    assert corr.loc["a", "spearman_r"] == pytest.approx(-1.0)
    assert corr.loc["a", "pearson_p"] < 1e-6
    assert corr.loc["b", "spearman_r"] == pytest.approx(1.0)
    assert 0 < corr.loc["b", "pearson_r"] < 1
    assert corr.loc["a", "n"] == 5
    # two points: no correlation is reported
    assert corr.loc["c", "n"] == 2 and math.isnan(corr.loc["c", "pearson_r"])


def test_correlations_skip_nan_and_constant_columns():
    runs = pd.DataFrame({"dataset": ["a"] * 4 + ["z"] * 3,
                         "entropy_mean": [0.0, 1.0, 2.0, 3.0, 0.0, 0.0, 0.0],
                         "test_acc": [0.9, 0.7, math.nan, 0.3, 0.1, 0.2, 0.3]})
    corr = ds.correlations(runs).set_index("dataset")
    assert corr.loc["a", "n"] == 3
    assert corr.loc["a", "pearson_r"] == pytest.approx(-1.0)
    assert math.isnan(corr.loc["z", "pearson_r"])   # constant entropy
    with pytest.raises(ValueError, match="entropy"):
        ds.correlations(runs.drop(columns="entropy_mean"))


# --------------------------------------------------------------------------- claim 3 helpers


def _history(per_epoch):
    return [{"epoch": e + 1, "bundles": _rows(h)} for e, h in enumerate(per_epoch)]


def test_layer_epoch_matrix_shape_order_and_values():
    hist = _history([[0.0, 0.1, 0.2], [0.0, 0.0, 0.3]])
    hist.insert(1, {"epoch": 99, "diverged": True})   # a record without bundles is skipped
    m = ds.layer_epoch_matrix(hist)
    assert list(m.index) == ["b0", "b1", "b2"]
    assert list(m.columns) == [1, 2]
    assert m.loc["b1", 1] == pytest.approx(0.1) and m.loc["b2", 2] == pytest.approx(0.3)


def test_layer_epoch_matrix_filters_residual_branch_taps():
    rows = []
    for i, (hb, ho) in enumerate([(0.0, 0.0), (0.4, 0.0)]):
        rows.append({"tap": f"s1.b{i}.branch", "layer": 2 * i, "role": "branch", "entropy": hb})
        rows.append({"tap": f"s1.b{i}.out", "layer": 2 * i + 1, "role": "output", "entropy": ho})
    hist = [{"epoch": 1, "bundles": rows}]
    m = ds.layer_epoch_matrix(hist, role="branch")
    assert list(m.index) == ["s1.b0.branch", "s1.b1.branch"]
    assert list(ds.layer_epoch_matrix(hist).index) == ["s1.b0.branch", "s1.b0.out", "s1.b1.branch", "s1.b1.out"]
    # residual: a block conflicts by its branch tap, whatever its output tap shows
    assert ds.conflicting_layers(hist[0]) == {"s1.b1.branch"}
    with pytest.raises(ValueError, match="branch"):
        ds.layer_epoch_matrix(hist, role="hidden")


def test_first_detection_epoch_hand_computed():
    # conflicting sets per epoch: {b0,b1,b2}, {b2}, {b1,b2}, {b1,b2,b3}, {b1,b2}
    hist = _history([
        [0.1, 0.1, 0.1, 0.0],
        [0.0, 0.0, 0.1, 0.0],
        [0.0, 0.2, 0.1, 0.0],
        [0.0, 0.2, 0.1, 0.3],
        [0.0, 0.2, 0.1, 0.0],
    ])
    # final set {b1,b2}: contained in epochs 1, 3, 4, 5 but not 2 -> first epoch of the tail is 3
    assert ds.first_detection_epoch(hist) == 3
    # equality holds at 3 and 5 but not 4 -> only the final epoch starts an equal tail
    assert ds.first_detection_epoch(hist, mode="equal") == 5
    curve = ds.detection_curve(hist)
    assert list(curve["conflicting"]) == [3, 1, 2, 3, 2]
    assert list(curve["found"]) == [2, 1, 2, 2, 2]
    assert curve["recall"].tolist() == [1.0, 0.5, 1.0, 1.0, 1.0]
    assert curve["jaccard"].tolist() == pytest.approx([2 / 3, 0.5, 1.0, 2 / 3, 1.0])


def test_first_detection_epoch_early_and_empty_cases():
    stable = _history([[0.0, 0.5], [0.0, 0.5], [0.0, 0.7]])
    assert ds.first_detection_epoch(stable) == 1
    assert ds.first_detection_epoch(stable, mode="equal") == 1
    # no conflict at the end: nothing to detect -> the first measured epoch (documented)
    clean = _history([[0.5, 0.0], [0.0, 0.0]])
    assert ds.first_detection_epoch(clean) == 1
    assert ds.first_detection_epoch(clean, mode="equal") == 2
    assert ds.first_detection_epoch([]) is None
    with pytest.raises(ValueError, match="contains"):
        ds.first_detection_epoch(stable, mode="subset")
