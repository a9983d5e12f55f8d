"""Tests of reproduce.theory: the accuracy bound and the collapsed (worst-case) network."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from reproduce.data.datasets import DataBundle
from reproduce.models.nets import ModelConfig, build_model
from reproduce.experiments.theory import (
    TrainingBoundCallback,
    bound_check,
    collapse_layer,
    dataset_tensors,
    layer_is_dead,
    majority_frequency,
    train_worst_case,
    worst_case_frame,
)
from reproduce.training.loop import TrainConfig

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
    # an epoch-0 record (the untrained net), where training writes one, is checked too
    assert [r["epoch"] for r in run.history if r["epoch"] >= 1] == list(range(1, 13))
    assert {r["epoch"] for r in run.history} <= set(range(13))
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
    n = len(intact.history)  # 2 trained epochs, plus an epoch-0 record where training writes one
    assert n in (2, 3) and len(collapsed.history) == n
    assert list(frame["network"]) == ["intact"] * n + ["collapsed"] * n
    assert list(frame[frame.epoch >= 1]["epoch"]) == [1, 2, 1, 2]
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

    from reproduce.experiments.theory import bound_summary

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
    from reproduce.experiments.theory import worst_case_summary

    data = _toy_bundle()
    mcfg = ModelConfig("fnn", num_classes=3, in_channels=1, input_size=2, fnn_width=6, fnn_depth=2)
    tcfg = TrainConfig(epochs=3, batch_size=5, lr=1e-2)
    collapsed = train_worst_case(mcfg, data, tcfg, collapse=1, progress=False)
    intact = train_worst_case(mcfg, data, tcfg, collapse=None, progress=False)
    s = worst_case_summary(collapsed, intact)
    assert s.majority == 0.6 and s.epochs == 3 and s.dead_every_epoch  # epochs >= 1 only
    assert s.collapsed_max_train_acc <= 0.6
    assert s.holds == (s.intact_final_train_acc > 0.6)
    with pytest.raises(ValueError, match="collapsed run first"):
        worst_case_summary(intact, collapsed)


# --------------------------------------------------------------------------- seeds


def _run(collapse, history, majority=0.5, seed=0):
    from reproduce.experiments.theory import WorstCaseRun

    mcfg = ModelConfig("fnn", num_classes=3, in_channels=1, input_size=2, fnn_width=4, fnn_depth=2)
    return WorstCaseRun(mcfg, TrainConfig(epochs=len(history), seed=seed), collapse, majority, history)


def test_worst_case_summary_reads_epochs_by_their_key_and_skips_epoch_zero():
    from reproduce.experiments.theory import worst_case_summary

    # epoch 0 (untrained, no train_acc) comes first; the records are out of order on purpose
    collapsed = _run(1, [{"epoch": 0, "dead": True}, {"epoch": 2, "train_acc": 0.5, "dead": True},
                         {"epoch": 1, "train_acc": 0.4, "dead": True}])
    intact = _run(None, [{"epoch": 0, "dead": None, "test_acc": 0.1}, {"epoch": 2, "train_acc": 0.9, "dead": None},
                         {"epoch": 1, "train_acc": 0.7, "dead": None}])
    s = worst_case_summary(collapsed, intact)
    assert s.epochs == 2 and s.collapsed_max_train_acc == 0.5 and s.collapsed_final_train_acc == 0.5
    assert s.intact_final_train_acc == 0.9 and s.holds
    # a layer alive after one trained epoch breaks the rule
    alive = _run(1, [{"epoch": 1, "train_acc": 0.4, "dead": True}, {"epoch": 2, "train_acc": 0.4, "dead": False}])
    assert not worst_case_summary(alive, intact).holds
    with pytest.raises(ValueError, match="no 'epoch' key"):
        worst_case_summary(_run(1, [{"train_acc": 0.4, "dead": True}]), intact)


def _bound_epochs(per_seed_correct):
    import pandas as pd

    rows = [{"seed": s, "width": 2, "depth": 1, "epoch": e, "bound_samples": 10, "bound_correct": c, "bound_limit": 6}
            for s, cs in per_seed_correct.items() for e, c in enumerate(cs)]
    return pd.DataFrame(rows)


def _worst(seeds, intact_final):
    return {s: {"collapsed": _run(1, [{"epoch": 1, "train_acc": 0.5, "dead": True}], seed=s),
                "intact": _run(None, [{"epoch": 1, "train_acc": intact_final[s], "dead": None}], seed=s)}
            for s in seeds}


def test_theory_claims_over_seeds_hand_built():
    from reproduce.experiments.theory import theory_claims

    # seed 1 exceeds the bound once (7 > 6); seed 2's intact net stays at the majority (0.5)
    epochs = _bound_epochs({0: [3, 6], 1: [5, 7], 2: [6, 6]})
    claims = theory_claims(epochs, _worst([0, 1, 2], {0: 0.9, 1: 0.8, 2: 0.5}), train_samples=10)
    assert [c.holds for c in claims] == [False, False] and [c.seeds for c in claims] == [3, 3]
    assert "5/6 (network, epoch) measurements over 3 seed(s)" in claims[0].measured
    assert "holds in 2 of 3 seeds (0 yes, 1 no, 2 yes)" in claims[0].measured
    assert "holds in 2 of 3 seeds (0 yes, 1 yes, 2 no)" in claims[1].measured
    assert "0: 0.9000, 1: 0.8000, 2: 0.5000" in claims[1].measured  # per-seed intact accuracies

    good = theory_claims(_bound_epochs({0: [3, 6], 2: [6, 6]}), _worst([0, 2], {0: 0.9, 2: 0.8}), train_samples=10)
    assert [c.holds for c in good] == [True, True] and good[0].seeds == 2
    with pytest.raises(ValueError, match=r"grid has seeds \[0, 2\] but the worst-case runs have seeds \[0\]"):
        theory_claims(_bound_epochs({0: [3], 2: [3]}), _worst([0], {0: 0.9}), train_samples=10)


def test_worst_case_specs_and_frame_carry_the_seed():
    from reproduce.config.scales import get_scale
    from reproduce.config.seeds import check_seeds
    from reproduce.experiments.theory import worst_case_specs

    scale = get_scale("smoke").replace(repeats=2)
    specs = worst_case_specs(scale, seeds=range(3, 3 + scale.repeats), collapse=1)
    assert [(s.train.seed, s.data.seed, s.init is not None) for s in specs] == [(3, 3, False), (3, 3, True),
                                                                               (4, 4, False), (4, 4, True)]
    assert len({s.run_dir for s in specs}) == 4
    with pytest.raises(ValueError, match="collapse"):
        worst_case_specs(scale, seeds=[0], collapse=None)
    with pytest.raises(ValueError, match=r"got 'a' in \('a',\)"):
        check_seeds(["a"])
    frame = worst_case_frame([_run(1, [{"epoch": 1, "train_acc": 0.5}], seed=4),
                              _run(None, [{"epoch": 0}, {"epoch": 1, "train_acc": 0.9}], seed=5)])
    assert list(frame["seed"]) == [4, 5, 5] and list(frame["epoch"]) == [1, 0, 1]


def test_run_worst_cases_trains_each_seed_on_its_own_split(tmp_path, monkeypatch):
    from reproduce.data.datasets import load_dataset
    from reproduce.config.scales import ROOT_ENV
    from reproduce.config.scales import get_scale
    from reproduce.experiments.theory import run_worst_cases

    (tmp_path / "notebooks").mkdir()
    (tmp_path / "reproduce").mkdir()
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    scale = get_scale("smoke").replace(repeats=2, train_limit=80, batch_size=32)
    data = load_dataset("digits", flat=True, seed=0, train_limit=80)
    runs = run_worst_cases(scale, data, seeds=[0, 1], collapse=0, width=4, depth=2, epochs=1, progress=False)
    assert sorted(runs) == [0, 1] and all(sorted(r) == ["collapsed", "intact"] for r in runs.values())
    assert {runs[s][k].seed for s in runs for k in runs[s]} == {0, 1}
    x0, _ = dataset_tensors(data.train_eval)
    x1, _ = dataset_tensors(load_dataset("digits", flat=True, seed=1, train_limit=80).train_eval)
    assert not torch.equal(x0, x1)  # the two seeds' splits differ, so the runs saw different data
    assert all(rec["dead"] is True for s in runs for rec in runs[s]["collapsed"].history)
