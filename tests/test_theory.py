"""Tests of reproduce.theory: the accuracy bound and the collapsed (worst-case) network."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from reproduce.data import DataBundle
from reproduce.models import ModelConfig, build_model
from reproduce.theory import (
    TrainingBoundCallback,
    bound_check,
    collapse_layer,
    dataset_tensors,
    layer_is_dead,
    majority_frequency,
    train_worst_case,
    worst_case_frame,
)
from reproduce.training import TrainConfig

torch.set_num_threads(1)


def _fnn(width: int, depth: int, features: int = 4, classes: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(ModelConfig("fnn", num_classes=classes, in_channels=1, input_size=int(math.isqrt(features)),
                                   fnn_width=width, fnn_depth=depth))


def _toy_bundle() -> DataBundle:
    """10 samples of 4 features, labels 6 x class 2, 3 x class 0, 1 x class 1: majority 0.6."""
    g = torch.Generator().manual_seed(1)
    y = torch.tensor([2] * 6 + [0] * 3 + [1])
    x = torch.rand(10, 4, generator=g) + torch.nn.functional.one_hot(y, 4).float()
    ds = TensorDataset(x, y)
    return DataBundle("toy", ds, ds, ds, num_classes=3, in_channels=1, image_size=2)


def test_majority_frequency_hand_computed():
    assert majority_frequency([0, 0, 1, 2, 2, 2, 2, 1], 3) == 4 / 8
    assert majority_frequency(torch.tensor([1]), 2) == 1.0
    with pytest.raises(ValueError, match="labels"):
        majority_frequency([0, 3], 3)
    with pytest.raises(ValueError, match="empty"):
        majority_frequency([], 3)


def test_collapsed_layer_outputs_zero_and_later_layers_are_constant():
    model = collapse_layer(_fnn(5, 3), 1)
    x = torch.randn(50, 4) * 10
    taps = list(model.eval().iter_taps(x))
    assert not (taps[0].activation == 0).all()  # the layer before is untouched
    assert (taps[1].activation == 0).all()
    last = taps[2].activation
    assert (last == last[0]).all()  # every sample has the same a^(L)
    logits = model(x)
    assert (logits == logits[0]).all()
    assert layer_is_dead(model, 1, x)
    assert not layer_is_dead(model, 0, x)


def test_collapse_layer_rejects_bad_input():
    with pytest.raises(ValueError, match="collapse index"):
        collapse_layer(_fnn(5, 3), 3)
    with pytest.raises(ValueError, match="bias"):
        collapse_layer(_fnn(5, 3), 0, bias=0.0)
    conv = build_model(ModelConfig("plain", num_classes=3, blocks=(1, 0, 0, 0), width=1 / 16))
    with pytest.raises(ValueError, match="FNN"):
        collapse_layer(conv, 0)


def test_bound_check_on_planted_bundles():
    """Hand-built FNN: a^(L) = the first two input features, so the bundles are planted in x."""
    model = _fnn(2, 1)
    with torch.no_grad():
        model.hidden[0].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
        model.hidden[0].bias.zero_()
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([1.0, 0.0, 0.0]))  # always predicts class 0
    x = torch.tensor([[1.0, 0, 5, 0], [1.0, 0, 0, 7], [1.0, 0, 2, 2],  # bundle A: labels 0, 0, 1
                      [0, 1.0, 0, 0], [0, 1.0, 3, 0],  # bundle B: labels 1, 2
                      [0, 2.0, 0, 0]])  # bundle C: label 2
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    chk = bound_check(model, x, y, num_classes=3, lr=1e-3, batch_size=64)
    assert chk.num_samples == 6
    assert chk.num_bundles == 3
    assert chk.bound_correct == 2 + 1 + 1
    assert chk.correct == 2  # the two class-0 samples
    assert chk.max_accuracy == pytest.approx(4 / 6) and chk.accuracy == pytest.approx(2 / 6)
    assert chk.respected
    h_a = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert chk.entropy == pytest.approx((3 * h_a + 2 * math.log(2)) / 6, abs=1e-6)
    assert model.training  # mode restored

    record: dict = {}
    TrainingBoundCallback(x, y, num_classes=3, lr=1e-3, batch_size=64)(model, 1, record)
    assert record["bound_limit"] == 4 and record["bound_correct"] == 2 and record["bound_num_bundles"] == 3


def test_bound_check_rejects_bad_input():
    with pytest.raises(ValueError, match="same number"):
        bound_check(_fnn(2, 1), torch.zeros(3, 4), torch.zeros(2, dtype=torch.long), num_classes=3, lr=1e-3,
                    batch_size=64)


def test_collapsed_network_stays_dead_and_reaches_exactly_the_majority_frequency():
    data = _toy_bundle()
    mcfg = ModelConfig("fnn", num_classes=3, in_channels=1, input_size=2, fnn_width=6, fnn_depth=3)
    tcfg = TrainConfig(epochs=12, batch_size=5, lr=1e-2)
    run = train_worst_case(mcfg, data, tcfg, collapse=1, progress=False)
    assert run.majority == 0.6
    assert len(run.history) == 12
    for rec in run.history:
        assert rec["dead"] is True
        assert rec["collapsed_weight_absmax"] == 0.0
        assert rec["collapsed_bias_max"] < 0
        assert rec["bound_num_bundles"] == 1 and rec["bound_limit"] == 6  # one bundle: bound = majority
        assert rec["train_acc"] <= 0.6
    # the head bias is the only thing that learns: it moves towards the class frequencies, so the
    # majority class (2) wins from the first step on and the accuracy is exactly 6/10
    assert run.history[-1]["train_acc"] == pytest.approx(0.6)
    assert (run.model.hidden[1].weight == 0).all()
    x, _ = dataset_tensors(data.train_eval)
    assert layer_is_dead(run.model, 1, x)


def test_intact_network_has_no_dead_record_and_frame_labels(tmp_path):
    data = _toy_bundle()
    mcfg = ModelConfig("fnn", num_classes=3, in_channels=1, input_size=2, fnn_width=6, fnn_depth=2)
    tcfg = TrainConfig(epochs=2, batch_size=5, lr=1e-2)
    intact = train_worst_case(mcfg, data, tcfg, collapse=None, progress=False)
    collapsed = train_worst_case(mcfg, data, tcfg, collapse=0, progress=False)
    assert all(r["dead"] is None for r in intact.history)
    frame = worst_case_frame([intact, collapsed])
    assert list(frame["network"]) == ["intact"] * 2 + ["collapsed"] * 2
    assert set(frame["majority"]) == {0.6}


def test_worst_case_runs_are_checkpointed_and_reused(tmp_path):
    data = _toy_bundle()
    mcfg = ModelConfig("fnn", num_classes=3, in_channels=1, input_size=2, fnn_width=4, fnn_depth=2)
    tcfg = TrainConfig(epochs=2, batch_size=5)
    first = train_worst_case(mcfg, data, tcfg, collapse=0, run_dir=tmp_path, progress=False)
    assert not first.cached and (tmp_path / "collapse0" / "checkpoint.pt").exists()
    second = train_worst_case(mcfg, data, tcfg, collapse=0, run_dir=tmp_path, progress=False)
    assert second.cached and second.model is not None
    assert [r["train_acc"] for r in second.history] == [r["train_acc"] for r in first.history]
    # the collapsed layer is still dead in the reloaded model
    assert torch.all(second.model.hidden[0].weight == 0) and torch.all(second.model.hidden[0].bias < 0)
    # another collapse index (not part of the model config) gets a folder of its own
    third = train_worst_case(mcfg, data, tcfg, collapse=1, run_dir=tmp_path, progress=False)
    assert not third.cached and (tmp_path / "collapse1" / "checkpoint.pt").exists()
    intact = train_worst_case(mcfg, data, tcfg, collapse=None, run_dir=tmp_path, progress=False)
    assert not intact.cached and (tmp_path / "intact" / "checkpoint.pt").exists()
    # a truncated checkpoint is recomputed
    ckpt = tmp_path / "collapse1" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match="truncated"):
        fourth = train_worst_case(mcfg, data, tcfg, collapse=1, run_dir=tmp_path, progress=False)
    assert not fourth.cached
    assert [r["train_acc"] for r in fourth.history] == [r["train_acc"] for r in third.history]


def test_train_worst_case_rejects_bad_input():
    data = _toy_bundle()
    mcfg = ModelConfig("fnn", num_classes=3, in_channels=1, input_size=2, fnn_width=4, fnn_depth=2)
    with pytest.raises(ValueError, match="collapse"):
        train_worst_case(mcfg, data, TrainConfig(epochs=1), collapse=2, progress=False)
    conv = ModelConfig("plain", num_classes=3, blocks=(1, 0, 0, 0))
    with pytest.raises(ValueError, match="FNN"):
        train_worst_case(conv, data, TrainConfig(epochs=1), collapse=None, progress=False)


def test_bound_summary_counts_hand_computed():
    import pandas as pd

    from reproduce.theory import bound_summary

    e = pd.DataFrame({"bound_samples": [10, 10, 10, 10], "bound_correct": [4, 6, 10, 7],
                      "bound_limit": [10, 6, 10, 5]})
    s = bound_summary(e)
    assert (s.pairs, s.respected, s.below_one, s.tight) == (4, 3, 2, 1)
    assert s.min_gap == pytest.approx(-0.2)
    assert not s.holds
    assert bound_summary(e.iloc[:3]).holds
    with pytest.raises(ValueError, match="lacks"):
        bound_summary(e.drop(columns="bound_limit"))


def test_worst_case_summary_rule():
    from reproduce.theory import worst_case_summary

    data = _toy_bundle()
    mcfg = ModelConfig("fnn", num_classes=3, in_channels=1, input_size=2, fnn_width=6, fnn_depth=2)
    tcfg = TrainConfig(epochs=3, batch_size=5, lr=1e-2)
    collapsed = train_worst_case(mcfg, data, tcfg, collapse=1, progress=False)
    intact = train_worst_case(mcfg, data, tcfg, collapse=None, progress=False)
    s = worst_case_summary(collapsed, intact)
    assert s.majority == 0.6 and s.epochs == 3 and s.dead_every_epoch
    assert s.collapsed_max_train_acc <= 0.6
    assert s.holds == (s.intact_final_train_acc > 0.6)
    with pytest.raises(ValueError, match="collapsed run first"):
        worst_case_summary(intact, collapsed)
