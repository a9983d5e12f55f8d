"""Tests of the depth study (claim 2) and early-detection helpers (claim 3)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from reproduce.experiments import depth_study as ds
from reproduce.config.scales import get_scale
from reproduce.training.loop import RunResult, TrainConfig
from reproduce.models.nets import ModelConfig, build_model


def tiny_preset():
    return get_scale("smoke").replace(depths=(4,), epochs=2, train_limit=128, width=1 / 16,
                                      last_epochs=1, repeats=1)


# --------------------------------------------------------------------------- training + tables


def test_depth_sweep_tables_one_row_per_run(results_root):
    P = tiny_preset()
    runs, per_epoch = ds.depth_sweep(P, progress=False, device="cpu")
    assert list(runs.columns) == list(ds.RUN_COLUMNS)
    assert list(per_epoch.columns) == list(ds.EPOCH_COLUMNS)
    # 1 dataset x 1 seed x 2 kinds x 1 depth
    assert len(runs) == 2
    assert sorted(runs["kind"]) == ["plain", "residual"]
    assert set(runs["depth"]) == {4}
    assert set(runs["status"]) == {"finished"}
    # one row per run and record: trained epochs 1, 2 and, when training records it, epoch 0
    epochs = sorted(per_epoch["epoch"].unique())
    assert epochs in ([1, 2], [0, 1, 2])
    assert len(per_epoch) == 2 * len(epochs)
    # the run table summarises the per-epoch table: mean entropy over every measured record (epoch 0
    # included, as released), test accuracy of the last trained epoch (last_epochs = 1)
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


def test_train_conv_rejects_bad_kind_and_depth(results_root):
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
    assert ds.conflicting_in(hist[0]) == {"s1.b1.branch"}
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


# --------------------------------------------------------------------------- epoch-0 records


def test_run_row_reads_epochs_from_their_key_with_an_untrained_record():
    # epoch 0 (untrained) first: its entropy enters the average, its accuracies do not
    history = [
        {"epoch": 0, "test_acc": 0.1, "train_acc": 0.1, "a_L_entropy": 0.9, "a_L_num_bundles": 2,
         "bundles": _rows([0.9])},
        {"epoch": 1, "test_acc": 0.5, "train_acc": 0.6, "a_L_entropy": 0.3, "a_L_num_bundles": 8,
         "bundles": _rows([0.3])},
        {"epoch": 2, "test_acc": 0.7, "train_acc": 0.8, "a_L_entropy": 0.0, "a_L_num_bundles": 10,
         "bundles": _rows([0.0])},
    ]
    row = ds.run_row(_fake_run(history), dataset="digits", seed=3, last_epochs=5)
    assert row["entropy_mean"] == pytest.approx((0.9 + 0.3 + 0.0) / 3)
    assert row["train_acc"] == pytest.approx((0.6 + 0.8) / 2)
    assert row["test_acc"] == pytest.approx((0.5 + 0.7) / 2)
    assert row["entropy_last"] == 0.0 and row["conflicting_last"] == 0 and row["seed"] == 3
    assert [r["epoch"] for r in ds.epoch_rows(_fake_run(history), dataset="digits", seed=3)] == [0, 1, 2]


def _history0(per_epoch):
    """Like _history, but the first entry is the untrained net's epoch-0 record."""
    return [{"epoch": e, "bundles": _rows(h)} for e, h in enumerate(per_epoch)]


def test_first_detection_never_counts_the_untrained_epoch():
    # sets: epoch 0 {b0,b1}, 1 {b0}, 2 {b1}, 3 {b1}: final {b1}; epoch 0 contains it but does not count
    hist = _history0([[0.1, 0.1], [0.1, 0.0], [0.0, 0.1], [0.0, 0.2]])
    assert ds.first_detection_epoch(hist) == 2
    # the untrained net and every trained epoch show the final set: detection at epoch 1, not 0
    stable = _history0([[0.0, 0.4], [0.0, 0.4], [0.0, 0.5]])
    assert ds.first_detection_epoch(stable) == 1
    assert ds.first_detection_epoch(stable, mode="equal") == 1
    # only the untrained net measured: nothing trained to detect with
    assert ds.first_detection_epoch(_history0([[0.3, 0.0]])) is None
    # the curve keeps an epoch-0 row, measured against the last trained epoch's set
    curve = ds.detection_curve(hist)
    assert list(curve["epoch"]) == [0, 1, 2, 3]
    assert list(curve["found"]) == [1, 0, 1, 1]
    assert set(curve["final_conflicting"]) == {1}
    # epochs come from the records' keys, not from positions
    shuffled = [{"epoch": 5, "bundles": _rows([0.0, 0.3])}, {"epoch": 7, "bundles": _rows([0.0, 0.3])}]
    assert ds.first_detection_epoch(shuffled) == 5
    with pytest.raises(ValueError, match="'epoch'"):
        ds.first_detection_epoch([{"bundles": _rows([0.1])}])


def _seed_run(per_epoch, kind="plain", seed=0, **record):
    hist = [{"epoch": e, "bundles": _rows(h), "a_L_entropy": h[-1], **record} for e, h in enumerate(per_epoch)]
    run = _fake_run(hist, kind=kind)
    run.train_config = TrainConfig(epochs=3, seed=seed)
    return run


def test_detection_summary_one_row_per_kind_and_seed():
    runs = {
        ("plain", 0): _seed_run([[0.2, 0.2, 0.0], [0.0, 0.3, 0.1], [0.0, 0.3, 0.2], [0.0, 0.4, 0.2]]),
        ("residual", 0): _seed_run([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]], kind="residual"),
        ("plain", 1): _seed_run([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.2, 0.2]]),
    }
    curves, summary = ds.detection_summary(runs, horizon=2)
    assert list(summary.columns) == list(ds.SUMMARY_COLUMNS)
    assert list(zip(summary["kind"], summary["seed"])) == [("plain", 0), ("residual", 0), ("plain", 1)]
    s = summary.set_index(["kind", "seed"])
    # plain seed 0: final {b1, b2}; epoch 0 {b0, b1} holds one of them; first trained epoch with both: 1
    assert s.loc[("plain", 0), "conflicting_final"] == 2
    assert s.loc[("plain", 0), "first_detection"] == 1
    assert s.loc[("plain", 0), "conflicting_epoch0"] == 2 and s.loc[("plain", 0), "found_epoch0"] == 1
    assert s.loc[("plain", 0), "a_L_entropy_horizon"] == pytest.approx(0.2)
    assert s.loc[("plain", 0), "a_L_entropy_final"] == pytest.approx(0.2)
    # the untrained net's H(a^(L)) (the last tap of the epoch-0 record), reported beside the stability rows
    assert s.loc[("plain", 0), "a_L_entropy_epoch0"] == pytest.approx(0.0)
    assert s.loc[("plain", 1), "a_L_entropy_epoch0"] == pytest.approx(0.0)
    # plain seed 1: its conflicts appear only at the last epoch (3)
    assert s.loc[("plain", 1), "first_detection"] == 3 and s.loc[("plain", 1), "found_epoch0"] == 0
    assert s.loc[("residual", 0), "conflicting_final"] == 0
    assert sorted(curves.groupby(["kind", "seed"]).size().items()) == [
        (("plain", 0), 4), (("plain", 1), 4), (("residual", 0), 4)]
    # a plain kind key takes the seed from the run's config; a malformed key is named
    _, by_kind = ds.detection_summary({"plain": _seed_run([[0.0, 0.1], [0.0, 0.1]], seed=7)}, horizon=1)
    assert by_kind["seed"].tolist() == [7] and by_kind["found_epoch0"].iloc[0] == 1
    with pytest.raises(ValueError, match="\\(kind, seed\\)"):
        ds.detection_summary({(0, "plain"): runs[("plain", 0)]}, horizon=1)


def test_seed_mean_matrix_planted_values():
    a = _history([[0.0, 0.2], [0.4, 0.0]])
    b = _history([[0.2, 0.4]])                       # this seed stopped after epoch 1
    m = ds.seed_mean_matrix([a, b])
    assert list(m.index) == ["b0", "b1"] and list(m.columns) == [1, 2]
    assert m.loc["b0", 1] == pytest.approx(0.1) and m.loc["b1", 1] == pytest.approx(0.3)
    assert m.loc["b0", 2] == pytest.approx(0.4)      # only seed a measured epoch 2
    with pytest.raises(ValueError, match="at least one"):
        ds.seed_mean_matrix([])


# --------------------------------------------------------------------------- claims over seeds


def _runs_table(entropy, acc=None):
    """A hand-built run table: ``entropy[seed][kind]`` lists the averaged entropy per depth 10, 20, 30;
    test accuracy 0.9 - 0.2 * entropy (a perfect negative relation) unless ``acc`` gives it."""
    rows = []
    for seed, kinds in entropy.items():
        for kind, hs in kinds.items():
            for i, (depth, h) in enumerate(zip((10, 20, 30), hs)):
                test = 0.9 - 0.2 * h if acc is None else acc[seed][kind][i]
                rows.append({"dataset": "d", "kind": kind, "depth": depth, "seed": seed,
                             "entropy_mean": h, "test_acc": test})
    return pd.DataFrame(rows)


def test_depth_claims_hold_when_every_seed_and_the_pool_hold():
    runs = _runs_table({0: {"plain": [0.0, 0.5, 1.0], "residual": [0.0, 0.0, 0.1]},
                        1: {"plain": [0.0, 0.4, 1.2], "residual": [0.0, 0.1, 0.0]}})
    claims = ds.depth_claims(runs)
    assert [c.verdict for c in claims] == ["holds", "holds", "holds"]
    assert {c.seeds for c in claims} == {2}
    assert "0: 1.000, 1: 1.200" in claims[0].measured and "seed mean 1.100" in claims[0].measured
    assert "seed 0: 2 of 2 [20, 30]; seed 1: 2 of 2 [20, 30]; seed mean: 2 of 2 [20, 30]" in claims[1].measured
    assert "all 12 runs pooled: Pearson r = -1.000" in claims[2].measured
    assert "holds in 2 of 2 seeds (0 yes, 1 yes)" in claims[2].measured


def test_depth_claims_fail_when_one_seed_or_the_pool_fails():
    # seed 1's deepest plain net has no conflict: the first row fails there
    one_fails = _runs_table({0: {"plain": [0.0, 0.5, 1.0], "residual": [0.0, 0.0, 0.0]},
                             1: {"plain": [0.0, 0.5, 0.0], "residual": [0.0, 0.0, 0.0]}})
    first = ds.depth_claims(one_fails)[0]
    assert first.verdict == "does not hold" and "holds in 1 of 2 seeds (0 yes, 1 no)" in first.measured
    # residual lower at 2 of 3 depths in each seed, but at 1 of 3 on the seed means: the pool fails
    pooled_fails = _runs_table({0: {"plain": [1.0, 1.0, 1.0], "residual": [0.0, 3.0, 0.0]},
                                1: {"plain": [1.0, 1.0, 1.0], "residual": [3.0, 0.0, 0.0]}})
    fewer = ds.depth_claims(pooled_fails)[1]
    assert "holds in 2 of 2 seeds" in fewer.measured and "seed mean: 1 of 3 [10, 20, 30]" in fewer.measured
    assert fewer.verdict == "does not hold"
    # the correlation: negative in seed 0, positive in seed 1
    acc = {0: {"plain": [0.9, 0.8, 0.7], "residual": [0.9, 0.9, 0.9]},
           1: {"plain": [0.1, 0.5, 0.9], "residual": [0.1, 0.1, 0.1]}}
    mixed = _runs_table({0: {"plain": [0.0, 0.5, 1.0], "residual": [0.0, 0.0, 0.0]},
                         1: {"plain": [0.0, 0.5, 1.0], "residual": [0.0, 0.0, 0.0]}}, acc)
    corr = ds.depth_claims(mixed)[2]
    assert corr.verdict == "does not hold" and "(0 yes, 1 no)" in corr.measured


def test_depth_claims_not_testable_seed_and_single_seed_text():
    # seed 1: no depth with a conflict -> the residual row cannot be applied there; seed 0 holds
    runs = _runs_table({0: {"plain": [0.0, 0.5, 1.0], "residual": [0.0, 0.0, 0.0]},
                        1: {"plain": [0.0, 0.0, 0.0], "residual": [0.0, 0.0, 0.0]}})
    fewer = ds.depth_claims(runs)[1]
    assert fewer.verdict == "not testable" and "(0 yes, 1 n/a)" in fewer.measured
    single = ds.depth_claims(runs[runs["seed"] == 0])
    assert [c.seeds for c in single] == [1, 1, 1]
    assert single[0].measured.startswith("plain depth 30: averaged a^(L) entropy 1.000; holds in 1 of 1")
    assert single[1].measured == "residual lower at 2 of 2 depths with a conflict [20, 30]; holds in 1 of 1 seeds (0 yes)"
    assert single[2].measured.startswith("Pearson r = -1.000 (p = ") and ", n = 6; holds in 1 of 1" in single[2].measured
    with pytest.raises(ValueError, match="seed"):
        ds.depth_claims(runs.drop(columns="seed"))


def _summary(rows):
    base = {"status": "finished", "blocks": 4, "first_equal": None, "conflicting_epoch0": None, "found_epoch0": None}
    return pd.DataFrame([{**base, **r} for r in rows], columns=list(ds.SUMMARY_COLUMNS))


def test_early_detection_claims_over_seeds():
    def rows(first1, final1=3, h1=(0.5, 0.4)):
        return [
            {"kind": "plain", "seed": 0, "conflicting_final": 3, "first_detection": 1,
             "a_L_entropy_horizon": 0.5, "a_L_entropy_final": 0.4},
            {"kind": "residual", "seed": 0, "conflicting_final": 0, "first_detection": 1,
             "a_L_entropy_horizon": 0.0, "a_L_entropy_final": 0.0},
            {"kind": "plain", "seed": 1, "conflicting_final": final1, "first_detection": first1,
             "a_L_entropy_horizon": h1[0], "a_L_entropy_final": h1[1]},
            {"kind": "residual", "seed": 1, "conflicting_final": 0, "first_detection": 1,
             "a_L_entropy_horizon": 0.0, "a_L_entropy_final": 0.0},
        ]
    both = ds.early_detection_claims(_summary(rows(2)), horizon=2, depth=10)
    assert [c.verdict for c in both] == ["holds", "holds"] and [c.seeds for c in both] == [2, 2]
    assert "first detection epoch (trained epochs) mean 1.5, range 1..2 (seeds 0: 1, 1: 2)" in both[0].measured
    late = ds.early_detection_claims(_summary(rows(3)), horizon=2, depth=10)[0]
    assert late.verdict == "does not hold" and "(0 yes, 1 no)" in late.measured
    nothing = ds.early_detection_claims(_summary(rows(1, final1=0)), horizon=2, depth=10)[0]
    assert nothing.verdict == "not testable" and "(0 yes, 1 n/a)" in nothing.measured
    # seed 1's plain a^(L) is clean at the horizon but conflicting at the end: the warning fails there
    warn = ds.early_detection_claims(_summary(rows(2, h1=(0.0, 0.4))), horizon=2, depth=10)[1]
    assert warn.verdict == "does not hold" and "(0 yes, 1 no)" in warn.measured
    unmeasured = ds.early_detection_claims(_summary(rows(2, h1=(None, 0.4))), horizon=2, depth=10)[1]
    assert unmeasured.verdict == "not testable"
    # the untrained net's value is reported, never counted
    with0 = _summary([{**r, "found_epoch0": 3 if r["kind"] == "plain" else 0} for r in rows(2)])
    text = ds.early_detection_claims(with0, horizon=2, depth=10)[0].measured
    assert "untrained net (epoch 0, not counted): mean 3, range 3..3" in text
    with pytest.raises(ValueError, match="seed"):
        ds.early_detection_claims(_summary(rows(2)).drop(columns="seed"), horizon=2, depth=10)


# --------------------------------------------------------------------------- the seeds' runs


def test_early_detection_specs_are_the_depth_study_runs_of_every_seed():
    P = get_scale("smoke").replace(repeats=2)
    seeds = range(5, 5 + P.repeats)
    early = ds.early_detection_specs(P, seeds)
    assert [(s.model.kind, s.data.seed) for s in early] == [("plain", 5), ("residual", 5), ("plain", 6), ("residual", 6)]
    depth_runs = {s.run_dir for s in ds.run_specs(P, seeds=seeds) if s.model.depth == P.early_depth
                  and s.data.name == P.dataset}
    assert {s.run_dir for s in early} == depth_runs and len(depth_runs) == 4
    assert len(ds.run_specs(P)) == 2 * len(P.depths) * P.repeats * len(P.datasets)
    with pytest.raises(ValueError, match="at least one seed"):
        ds.early_detection_specs(P, [])
    with pytest.raises(ValueError, match="distinct"):
        ds.run_specs(P, seeds=[1, 1])


def test_early_detection_runs_two_seeds_end_to_end(results_root):
    P = tiny_preset().replace(repeats=2, early_depth=4)
    runs = ds.early_detection_runs(P, range(P.repeats), progress=False, device="cpu")
    assert sorted(runs) == [("plain", 0), ("plain", 1), ("residual", 0), ("residual", 1)]
    assert {r.train_config.seed for (_, s), r in runs.items() if s == 1} == {1}
    curves, summary = ds.detection_summary(runs, horizon=ds.detection_horizon(P.epochs))
    assert sorted(summary["seed"]) == [0, 0, 1, 1] and set(curves["seed"]) == {0, 1}
    claims = ds.early_detection_claims(summary, horizon=1, depth=4)
    assert [c.seeds for c in claims] == [2, 2]
    assert all("seeds (0 " in c.measured for c in claims)
    again = ds.early_detection_runs(P, [1], progress=False, device="cpu")
    assert again[("plain", 1)].resumed_from == P.epochs   # reused, not retrained


def test_correlations_per_dataset_and_seed():
    h = [0.0, 1.0, 2.0]
    runs = pd.DataFrame({"dataset": ["a"] * 6, "seed": [0, 0, 0, 1, 1, 1], "entropy_mean": h + h,
                         "test_acc": [0.9, 0.7, 0.5, 0.1, 0.2, 0.3]})
    corr = ds.correlations(runs, by=["dataset", "seed"])
    assert list(corr.columns) == ["dataset", "seed", *ds.CORRELATION_COLUMNS[1:]]
    assert corr["pearson_r"].tolist() == pytest.approx([-1.0, 1.0])
    assert corr["seed"].tolist() == [0, 1] and corr["n"].tolist() == [3, 3]
    with pytest.raises(ValueError, match="at least one"):
        ds.correlations(runs, by=[])


def test_cooks_distance_by_hand():
    """Points (0, 0), (1, 1), (2, 2), (3, 0): the line y = 0.6 + 0.1 x (Sxy 0.5, Sxx 5); residuals
    -0.6, 0.3, 1.2, -0.9, leverages 0.7, 0.3, 0.3, 0.7, s**2 = 2.7 / 2 = 1.35; so
    D = e**2 h / (2 s**2 (1 - h)**2) = 1.037, 0.0204, 0.3265, 2.333."""
    d = ds.cooks_distance([0, 1, 2, 3], [0, 1, 2, 0])
    assert np.allclose(d, [0.252 / 0.243, 0.027 / 1.323, 0.432 / 1.323, 0.567 / 0.243])
    assert int(np.argmax(d)) == 3  # the last point drives the fit
    lone = ds.cooks_distance([0, 0, 0, 5], [1, 2, 3, 9])  # the only point at x = 5 has leverage 1
    assert np.isinf(lone[3]) and np.isfinite(lone[:3]).all()
    with pytest.raises(ValueError, match="more than one x value"):
        ds.cooks_distance([1, 1, 1], [0, 1, 2])


# --------------------------------------------------------------------------- claim 3 as the paper states it


def _rec(epoch, a_l, blocks=None, second=None, stages=None):
    """One hand-built epoch record: H(a^(L)) ``a_l``; per-block entropies ``blocks`` (first batch)
    and ``second`` (second batch); block ``i`` lies in stage ``stages[i]`` (default all 0)."""
    def rows(hs):
        st = stages or [0] * len(hs)
        return [{**r, "stage": s} for r, s in zip(_rows(hs), st)]
    r = {"epoch": epoch, "a_L_entropy": a_l, "bundles": rows(blocks if blocks is not None else [a_l])}
    if second is not None:
        r[ds.SECOND_KEY] = rows(second)
    return r


def _a_l_history(values, start=1):
    return [_rec(e, h) for e, h in enumerate(values, start=start)]


def test_final_state_reads_three_of_the_last_four_trained_records():
    assert ds.final_state(_a_l_history([0, 0, 0.1, 0.1, 0, 0.1])) == "conflicting"
    assert ds.final_state(_a_l_history([0.5, 0.5, 0, 0.1, 0, 0])) == "clean"
    assert ds.final_state(_a_l_history([0, 0.1, 0.1, 0, 0])) == "mixed"       # 2 of 4 either way
    assert ds.final_state(_a_l_history([0.1, 0.1, 0.1])) is None                # fewer than 4 records
    # the untrained epoch-0 record is not one of the last trained records
    assert ds.final_state([_rec(0, 0.9)] + _a_l_history([0.1, 0.1, 0.1])) is None


def test_rule_3a_detectable_early_holds_fails_and_not_testable():
    w = 2
    early = _a_l_history([0, 0.2, 0.3, 0.3, 0.3, 0.3])       # conflicts at 2 <= W, ends conflicting
    late = _a_l_history([0, 0, 0.3, 0.3, 0.3, 0.3])          # ends conflicting, nothing by W
    clean = _a_l_history([0, 0, 0, 0, 0, 0])
    untrained_only = [_rec(0, 0.4)] + late                    # epoch 0 does not count as "trained <= W"
    assert ds.first_conflict(early, w) == 2 and ds.first_conflict(untrained_only, w) is None
    runs = {("plain", 0): early, ("residual", 0): clean, ("plain", 1): late, ("residual", 1): clean,
            ("plain", 2): clean, ("residual", 2): clean}
    a = ds.claim3_claims(runs, window=w, depth=10)[0]
    assert "3a" in a.claim and "(0 yes, 1 no, 2 n/a)" in a.measured and a.verdict == "does not hold"
    only_good = ds.claim3_claims({("plain", 0): early, ("plain", 2): clean}, window=w, depth=10)[0]
    # a seed with nothing to test makes the row not testable over seeds (over_seeds), not "holds"
    assert only_good.verdict == "not testable" and "(0 yes, 2 n/a)" in only_good.measured
    assert ds.claim3_claims({("plain", 0): early, ("residual", 0): clean}, window=w, depth=10)[0].verdict == "holds"
    assert ds.claim3_claims({("plain", 2): clean}, window=w, depth=10)[0].verdict == "not testable"


def test_rule_3b_clean_early_stays_clean_within_five_percent():
    w = 2
    later = [0.0] * 20
    one = _a_l_history([0, 0] + [0.1] + later[1:])            # 1 of 20 later records conflicting: 5 %
    two = _a_l_history([0, 0] + [0.1, 0.1] + later[2:])       # 2 of 20: 10 %
    ends_bad = _a_l_history([0, 0] + later[:16] + [0.1, 0.1, 0.1, 0])   # 3 of 20 (15 %) and ends conflicting
    assert ds.clean_early(one, w) is True and ds.later_fraction(one, w) == pytest.approx(0.05)
    assert ds.later_fraction(two, w) == pytest.approx(0.10)
    rows = lambda h: ds.claim3_claims({("residual", 0): h}, window=w, depth=10)[1]  # noqa: E731
    assert rows(one).verdict == "holds"
    assert rows(two).verdict == "does not hold" and rows(ends_bad).verdict == "does not hold"
    assert rows(_a_l_history([0, 0] + [0.0] * 36)).verdict == "holds"      # never conflicting
    # not clean early (conflicts at epoch 1) -> nothing to test; an unmeasured epoch <= W -> not clean early
    assert rows(_a_l_history([0.1] + [0.0] * 10)).verdict == "not testable"
    # too short to read the end (the smoke scale: 2 epochs, W = 1): not testable, not a failure
    assert rows(_a_l_history([0, 0, 0])).verdict == "not testable"
    assert ds.claim3_claims({("plain", 0): _a_l_history([0, 0])}, window=1, depth=10)[1].verdict == "not testable"
    gap = [_rec(1, 0.0)] + _a_l_history([0.0] * 8, start=3)
    assert ds.clean_early(gap, w) is None and rows(gap).verdict == "not testable"


def test_rule_3b_fails_when_clean_early_net_ends_conflicting_below_the_tolerance():
    # 3 of 40 later records (7.5 %), the last ones: over the tolerance and ends conflicting -> fails;
    # 2 of 40 (5 %, within the tolerance) as 2 of the last 4: the end is "mixed", not clean -> fails
    w = 2
    ends = _a_l_history([0, 0] + [0.0] * 37 + [0.1, 0.1, 0.1])
    assert ds.final_state(ends) == "conflicting"
    assert ds.claim3_claims({("plain", 0): ends}, window=w, depth=10)[1].verdict == "does not hold"
    mild = _a_l_history([0, 0] + [0.0] * 38 + [0.1, 0.1])
    assert ds.final_state(mild) == "mixed"
    assert ds.claim3_claims({("plain", 0): mild}, window=w, depth=10)[1].verdict == "does not hold"


def _layer_history(second, final_blocks, w_first=2):
    """a^(L) clean at epoch 1, conflicting from ``w_first`` on; ``second`` is the second-batch
    per-block set at e* = ``w_first``; the last 4 records plant the final per-block entropies."""
    recs = [_rec(1, 0.0, blocks=[0.0] * 5, second=[0.0] * 5)]
    recs.append(_rec(w_first, 0.3, blocks=[0.1] * 5, second=second))
    recs += [_rec(w_first + 1 + i, 0.3, blocks=b) for i, b in enumerate(final_blocks)]
    return recs


#: last 4 records: b0 conflicting in 2 of them (not in F), b1..b4 in 3 or 4 (in F)
_FINAL = [[0.1, 0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.0, 0.1, 0.1], [0.0, 0.1, 0.1, 0.0, 0.1], [0.0, 0.0, 0.1, 0.1, 0.1]]


def test_rule_3c_overlap_of_the_early_second_batch_set_and_the_final_set():
    assert ds.final_blocks(_layer_history([0.0] * 5, _FINAL)) == {"b1", "b2", "b3", "b4"}
    # S = all five: recall 4/4, precision 4/5 = 0.8 -> holds (at the boundary)
    m = ds.layer_match(_layer_history([0.1] * 5, _FINAL), window=2)
    assert (m["epoch"], m["early"], m["final"]) == (2, 5, 4)
    assert m["recall"] == 1.0 and m["precision"] == pytest.approx(0.8) and m["holds"] is True
    # S = {b1, b2, b3}: recall 3/4 < 0.8 -> fails
    low = ds.layer_match(_layer_history([0.0, 0.1, 0.1, 0.1, 0.0], _FINAL), window=2)
    assert low["recall"] == pytest.approx(0.75) and low["precision"] == 1.0 and low["holds"] is False
    # S is read from the SECOND batch: the first-batch rows at e* (all five conflicting) do not matter
    runs = {("plain", 0): _layer_history([0.1] * 5, _FINAL), ("plain", 1): _layer_history([0.0, 0.1, 0.1, 0.1, 0.0], _FINAL)}
    c = ds.claim3_claims(runs, window=2, depth=10)[2]
    assert "3c" in c.claim and "(0 yes, 1 no)" in c.measured and c.verdict == "does not hold"
    # not testable: a^(L) first conflicts after W; no second-batch record at e*; F empty
    assert ds.layer_match(_layer_history([0.1] * 5, _FINAL, w_first=3), window=2) is None
    no_second = _layer_history([0.1] * 5, _FINAL)
    del no_second[1][ds.SECOND_KEY]
    assert ds.layer_match(no_second, window=2) is None
    assert ds.layer_match(_layer_history([0.1] * 5, [[0.0] * 5] * 4), window=2) is None
    assert ds.claim3_claims({("plain", 0): no_second}, window=2, depth=10)[2].verdict == "not testable"


def test_pruning_decision_paper_and_revised_rules_by_hand():
    rows = [{**r, "stage": s} for r, s in zip(_rows([0.0] * 5), [0, 0, 1, 1, 1])]
    # b1 (stage 0) and b3 (stage 1) conflict: paper keeps the clean blocks of every stage -> (1, 2);
    # revised cuts only stage 0 (the first holding a conflict) -> (1, 3)
    assert ds.pruning_decision(rows, {"b1", "b3"}, "paper") == (1, 2)
    assert ds.pruning_decision(rows, {"b1", "b3"}, "revised") == (1, 3)
    assert ds.pruning_decision(rows, {"b3"}, "revised") == (2, 2)
    assert ds.pruning_decision(rows, set(), "paper") == (2, 3)
    with pytest.raises(ValueError, match="valid rules are paper, revised"):
        ds.pruning_decision(rows, {"b1"}, "both")
    with pytest.raises(ValueError, match="b9"):
        ds.pruning_decision(rows, {"b9"}, "paper")
    # reported by 3c: S = {b0..b4} vs F = {b1..b4} in one stage -> paper (0) vs (1) differ
    m = ds.layer_match(_layer_history([0.1] * 5, _FINAL), window=2)
    assert m["same_paper"] is False and m["same_revised"] is False
    same = ds.layer_match(_layer_history([0.0, 0.1, 0.1, 0.1, 0.1], _FINAL), window=2)
    assert same["same_paper"] is True and same["holds"] is True


def test_stability_rows_are_labelled_stricter_than_the_paper():
    rows = [{"kind": "plain", "seed": 0, "conflicting_final": 1, "first_detection": 1,
             "a_L_entropy_horizon": 0.5, "a_L_entropy_final": 0.4}]
    claims = ds.early_detection_claims(_summary(rows), horizon=2, depth=10)
    assert all(c.claim.startswith("stability (stricter than the paper)") for c in claims)
    # epoch 0 (the untrained net) is reported beside the horizon row, and decides nothing
    with_zero = [{**rows[0], "a_L_entropy_epoch0": 0.25}]
    row = ds.early_detection_claims(_summary(with_zero), horizon=2, depth=10)[1]
    assert "0.250 at epoch 0 (untrained, not counted)" in row.measured and row.verdict == "holds"
    flipped = [{**rows[0], "a_L_entropy_epoch0": 0.0}]
    assert ds.early_detection_claims(_summary(flipped), horizon=2, depth=10)[1].verdict == "holds"


def test_second_batch_callback_measures_another_batch_only_within_the_window(toy_data):
    from types import SimpleNamespace
    from reproduce.data.datasets import measurement_samples
    from reproduce.metric.bundles import measure_model
    data = toy_data(n=96)
    model = build_model(ModelConfig("plain", 10, 1, 3, (1, 0, 0, 0), width=1 / 16))
    spec = SimpleNamespace(train=TrainConfig(epochs=3, lr=0.1, batch_size=8))
    cb = ds.second_batch_callback(data, spec, sample_size=16, seed=4, window=1)
    records = [{"epoch": e} for e in range(3)]
    for e, r in enumerate(records):
        cb(model, e, r)
    assert [ds.SECOND_KEY in r for r in records] == [True, True, False]
    for e in (0, 1):  # the rows are those of draw SECOND_BATCH_DRAW + e, not of the first batch (draw e)
        x, y = measurement_samples(data, 16, 4, draw=ds.SECOND_BATCH_DRAW + e)
        assert not torch.equal(x, measurement_samples(data, 16, 4, draw=e)[0])
        want = measure_model(model, x, y, num_classes=3, lr=0.1, batch_size=8)
        assert [r["entropy"] for r in records[e][ds.SECOND_KEY]] == pytest.approx(list(want["entropy"]))
    with pytest.raises(ValueError, match="window"):
        ds.second_batch_callback(data, spec, sample_size=16, seed=4, window=-1)
    # the depth-study runs declare it with the scale's auto-tune window
    P = tiny_preset()
    hooks = {h.target: dict(h.kwargs) for h in ds.conv_spec(P, "plain", 4).callbacks}
    assert hooks["reproduce.depth_study:second_batch_callback"]["window"] == P.autotune_check_epochs


def test_claim3_rows_say_why_a_net_is_not_testable():
    w = 2
    short = _a_l_history([0.1, 0.1])                          # 2 trained records: end unreadable
    never = _a_l_history([0, 0, 0.3, 0.3, 0.3, 0.3])          # a^(L) first conflicts at 3 > W
    no_second = _layer_history([0.1] * 5, _FINAL)
    del no_second[1][ds.SECOND_KEY]
    empty_f = _layer_history([0.1] * 5, [[0.0] * 5] * 4)
    assert ds.layer_match_gap(short, w) == "fewer than 4 trained records"
    assert ds.layer_match_gap(never, w) == "a^(L) clean at epochs 1..2"
    assert ds.layer_match_gap(no_second, w) == "no second-batch record at e*=2"
    assert ds.layer_match_gap(empty_f, w) == "final set F empty"
    assert ds.layer_match_gap(_layer_history([0.1] * 5, _FINAL), w) is None   # testable
    runs = {("plain", 0): short, ("residual", 0): never}
    a, _, c = ds.claim3_claims(runs, window=w, depth=10)
    assert "per seed, plain: 1; residual: none;" in a.measured
    assert "plain unreadable (< 4 trained records), residual conflicting" in a.measured
    assert "seed 0 plain: not testable (fewer than 4 trained records)" in c.measured
    assert "seed 0 residual: not testable (a^(L) clean at epochs 1..2)" in c.measured
