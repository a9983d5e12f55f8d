"""Tests of reproduce.fnn_map: the width x depth sweep, its tables and the boundary drawing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import TensorDataset

from reproduce.data.datasets import DataBundle, load_dataset
from reproduce.experiments.fnn_map import (
    EPOCH_COLUMNS,
    MAP_COLUMNS,
    accuracy_grid,
    boundary_segments,
    fnn_config,
    train_grid,
)
from reproduce.config.scales import ROOT_ENV
from reproduce.config.scales import get_scale

torch.set_num_threads(1)


@pytest.fixture
def root(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "reproduce").mkdir()
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    return tmp_path


def _tiny_preset(**changes):
    values = dict(fnn_widths=(2, 8), fnn_depths=(1, 3), fnn_epochs=1, train_limit=100, sample_size=32,
                  last_epochs=1)
    return get_scale("smoke").replace(**{**values, **changes})


def test_sweep_table_shape_and_columns(root):
    preset = _tiny_preset()
    data = load_dataset("digits", flat=True, train_limit=preset.train_limit)
    result = train_grid(preset, data, seed=0, progress=False)
    table = result.table
    assert list(table.columns) == list(MAP_COLUMNS)
    assert list(result.epochs.columns) == list(EPOCH_COLUMNS)
    # 2 x 2 networks, one trained epoch each (plus an epoch-0 record, where training writes one)
    assert len(table) == 4 and len(result.epochs[result.epochs.epoch >= 1]) == 4
    assert set(result.epochs.epoch) <= {0, 1} and (table["seed"] == 0).all()
    assert set(zip(table["width"], table["depth"])) == {(2, 1), (8, 1), (2, 3), (8, 3)}
    assert set(table["status"]) == {"finished"}
    assert result.sample_size == 32 and result.train_samples == 100
    assert (result.epochs["bound_samples"] == 100).all()
    assert (table["a_L_num_bundles"] <= 32).all() and (table["a_L_num_bundles"] >= 1).all()
    assert table["test_acc"].between(0, 1).all()
    # conflicting <=> entropy > 0
    assert (table["a_L_conflicting"] == (table["a_L_entropy"] > 0)).all()
    # parameters of the 8x3 net: (64*8+8) + 2*(8*8+8) + (8*10+10)
    assert table.set_index("label").loc["fnn-8x3", "parameters"] == 520 + 144 + 90
    runs = sorted(p.name for p in (root / "results" / "smoke" / "fnn_map").iterdir())
    assert len(runs) == 4 and all(r.startswith("fnn-") for r in runs)

    # a second sweep reuses the finished runs: same numbers, checkpoints untouched
    stamps = {p: p.stat().st_mtime_ns for p in (root / "results").rglob("checkpoint.pt")}
    again = train_grid(preset, data, seed=0, progress=False)
    pd.testing.assert_frame_equal(again.table, table)
    assert {p: p.stat().st_mtime_ns for p in (root / "results").rglob("checkpoint.pt")} == stamps


def test_identical_inputs_give_one_conflicting_bundle(root):
    """Planted: every training input is the zero vector, so every layer maps all samples to one
    activation; a^(L) holds one bundle, the bound is the majority frequency (12 of 20) and no
    network can exceed it."""
    y = torch.tensor([3] * 12 + [1] * 5 + [0] * 3)
    x = torch.zeros(20, 4)
    ds = TensorDataset(x, y)
    data = DataBundle("zeros", ds, ds, ds, num_classes=4, in_channels=1, image_size=2)
    preset = _tiny_preset(sample_size=20, batch_size=10)
    result = train_grid(preset, data, seed=0, widths=(1, 4), depths=(2,), progress=False)
    t = result.table
    assert list(t["a_L_num_bundles"]) == [1, 1]
    assert t["a_L_conflicting"].all()
    assert np.allclose(t["a_L_max_accuracy"], 12 / 20)
    assert np.allclose(t["bound_max_accuracy"], 12 / 20)
    assert (result.epochs["bound_limit"] == 12).all()
    assert (result.epochs["bound_correct"] <= 12).all()
    assert t["bound_respected"].all()


def test_sweep_rejects_bad_grid(root):
    preset = _tiny_preset()
    data = load_dataset("digits", flat=True, train_limit=preset.train_limit)
    with pytest.raises(ValueError, match="widths"):
        train_grid(preset, data, widths=(0, 2), progress=False)
    with pytest.raises(ValueError, match="depths"):
        train_grid(preset, data, depths=(), progress=False)


def test_fnn_config_matches_data():
    data = load_dataset("digits", flat=True, train_limit=50)
    cfg = fnn_config(data, 16, 4)
    assert (cfg.kind, cfg.fnn_width, cfg.fnn_depth, cfg.num_classes, cfg.input_size) == ("fnn", 16, 4, 10, 8)


def test_accuracy_grid_orientation():
    table = pd.DataFrame({"width": [8, 2, 8, 2], "depth": [3, 3, 1, 1], "test_acc": [0.4, 0.3, 0.2, 0.1]})
    grid = accuracy_grid(table)
    assert list(grid.index) == [1, 3] and list(grid.columns) == [2, 8]
    assert grid.to_numpy().tolist() == [[0.1, 0.2], [0.3, 0.4]]
    with pytest.raises(ValueError, match="unknown column"):
        accuracy_grid(table, "nope")


def _norm(segments):
    return sorted(tuple(sorted(s)) for s in segments)


def test_boundary_segments_hand_computed():
    mask = np.array([[True, False], [True, True]])
    # (0,0)|(0,1) differ: vertical edge x=1, y in [0,1]; (0,1)/(1,1) differ: horizontal edge y=1, x in [1,2]
    assert _norm(boundary_segments(mask)) == _norm([((1.0, 0.0), (1.0, 1.0)), ((1.0, 1.0), (2.0, 1.0))])
    assert boundary_segments(np.ones((3, 4), dtype=bool)) == []
    assert boundary_segments(np.zeros((2, 2), dtype=bool)) == []
    # a single True cell in the middle of a 3x3 grid is enclosed by its four edges
    mid = np.zeros((3, 3), dtype=bool)
    mid[1, 1] = True
    assert _norm(boundary_segments(mid)) == _norm([((1.0, 1.0), (2.0, 1.0)), ((1.0, 2.0), (2.0, 2.0)),
                                                    ((1.0, 1.0), (1.0, 2.0)), ((2.0, 1.0), (2.0, 2.0))])


def test_boundary_segments_treats_missing_as_false_and_rejects_1d():
    frame = pd.DataFrame([[True, None], [np.nan, True]], dtype=object)
    assert _norm(boundary_segments(frame)) == _norm(boundary_segments(np.array([[True, False], [False, True]])))
    with pytest.raises(ValueError, match="2-D"):
        boundary_segments(np.array([True, False]))


def test_conflict_statistics_hand_computed():
    from reproduce.experiments.fnn_map import conflict_statistics

    table = pd.DataFrame({
        "test_acc": [0.1, 0.2, 0.15, 0.8, 0.9, 0.85, 0.95, np.nan],
        "a_L_entropy": [2.0, 1.0, 1.5, 0.0, 0.0, 0.0, 0.0, 3.0],
    })
    s = conflict_statistics(table)
    assert (s.n_conflicting, s.n_clean) == (3, 4)  # the NaN-accuracy net is left out
    assert s.mean_acc_conflicting == pytest.approx(0.15) and s.mean_acc_clean == pytest.approx(0.875)
    # every conflicting net is below every clean one: U = 0, exact one-sided p = 1 / C(7, 3) = 1/35
    assert s.p_mannwhitney == pytest.approx(1 / 35)
    assert s.separates
    # entropy ranks (ties averaged) against accuracy ranks: hand-computed Spearman rho
    ent_rank = np.array([7, 5, 6, 2.5, 2.5, 2.5, 2.5])
    acc_rank = np.array([1, 3, 2, 4, 6, 5, 7])
    assert s.spearman_rho == pytest.approx(np.corrcoef(ent_rank, acc_rank)[0, 1])
    assert s.spearman_rho < 0 and s.correlates


def test_conflict_statistics_with_one_group_does_not_hold():
    from reproduce.experiments.fnn_map import conflict_statistics

    s = conflict_statistics(pd.DataFrame({"test_acc": [0.5, 0.6, 0.7], "a_L_entropy": [0.0, 0.0, 0.0]}))
    assert s.n_conflicting == 0 and np.isnan(s.p_mannwhitney) and not s.separates
    assert np.isnan(s.spearman_rho) and not s.correlates


def test_conflict_mask_is_plain_bool_grid():
    from reproduce.experiments.fnn_map import conflict_mask

    table = pd.DataFrame({"width": [2, 8, 2, 8], "depth": [1, 1, 3, 3], "a_L_conflicting": [True, False, None, True]})
    mask = conflict_mask(table)
    assert mask.dtypes.map(lambda d: d == bool).all()
    assert mask.to_numpy().tolist() == [[True, False], [False, True]]


# --------------------------------------------------------------------------- seeds


def test_sweep_over_two_seeds_gives_one_row_per_seed_and_cell(root):
    preset = _tiny_preset(fnn_widths=(2, 8), fnn_depths=(1,), repeats=2)
    data = load_dataset("digits", flat=True, seed=3, train_limit=preset.train_limit)
    result = train_grid(preset, data, seeds=[3, 4], progress=False)
    t = result.table
    assert result.seeds == (3, 4)
    assert list(zip(t["seed"], t["width"])) == [(3, 2), (3, 8), (4, 2), (4, 8)]
    assert sorted(set(result.epochs["seed"])) == [3, 4]
    # each seed trains on its own data split, with its own initialisation: the two seeds differ
    assert not np.allclose(t[t.seed == 3]["test_acc"].to_numpy(), t[t.seed == 4]["test_acc"].to_numpy())
    # and a seed's runs are those of a one-seed sweep of data loaded with that seed
    data4 = load_dataset("digits", flat=True, seed=4, train_limit=preset.train_limit)
    alone = train_grid(preset, data4, seed=4, progress=False).table
    pd.testing.assert_frame_equal(alone.reset_index(drop=True), t[t.seed == 4].reset_index(drop=True))
    # the default seeds are 0..repeats-1
    from reproduce.experiments.fnn_map import run_specs

    assert [s.train.seed for s in run_specs(preset)] == [0, 0, 1, 1]
    assert [s.data.seed for s in run_specs(preset, seeds=[5], data=data)] == [5, 5]


def test_seeds_are_checked():
    from reproduce.experiments.fnn_map import run_specs

    preset = _tiny_preset()
    with pytest.raises(ValueError, match=r"seeds must be .*got \(1, 1\)"):
        run_specs(preset, seeds=[1, 1])
    with pytest.raises(ValueError, match=r"int >= 0, got -1 in \(0, -1\)"):
        run_specs(preset, seeds=[0, -1])
    with pytest.raises(ValueError, match="not both"):
        run_specs(preset, seeds=[0], seed=0)


def _seed_table(rows):
    """rows: (seed, width, depth, test_acc, a_L_entropy[, status])."""
    out = []
    for r in rows:
        seed, w, d, acc, ent = r[:5]
        out.append({"seed": seed, "width": w, "depth": d, "label": f"fnn-{w}x{d}", "status": r[5] if len(r) > 5 else
                    "finished", "test_acc": acc, "a_L_entropy": ent, "a_L_num_bundles": 1.0 if ent > 0 else 10.0,
                    "a_L_conflicting": ent > 0, "bound_respected": True})
    return pd.DataFrame(out)


def test_seed_mean_table_hand_computed():
    from reproduce.experiments.fnn_map import MEAN_COLUMNS, seed_mean_table

    t = _seed_table([(0, 2, 1, 0.2, 1.0), (1, 2, 1, 0.4, 0.0), (2, 2, 1, 0.9, 2.0, "diverged"),
                     (0, 8, 1, 0.8, 0.0), (1, 8, 1, float("nan"), 0.0)])
    m = seed_mean_table(t)
    assert list(m.columns) == list(MEAN_COLUMNS)
    a = m.set_index("width").loc[2]
    # the diverged seed 2 is left out: mean of 0.2 and 0.4, entropy mean of 1 and 0, one conflicting seed of two
    assert a["seeds"] == 2 and a["seeds_conflicting"] == 1
    assert a["test_acc"] == pytest.approx(0.3) and (a["test_acc_min"], a["test_acc_max"]) == (0.2, 0.4)
    assert a["a_L_entropy"] == pytest.approx(0.5)
    assert list(m["a_L_conflicting"]) == [True, False]  # plain bools: conflicting in at least one seed
    assert a["a_L_num_bundles"] == pytest.approx(5.5)
    b = m.set_index("width").loc[8]
    assert b["seeds"] == 1 and b["test_acc"] == 0.8
    with pytest.raises(ValueError, match="lacks columns"):
        seed_mean_table(t.drop(columns="a_L_entropy"))


def _planted_map(separating_seeds):
    """Four widths x three depths; in a separating seed the narrow nets (widths 1, 2) are conflicting
    and lower in accuracy, in the other seed the conflicting nets are the accurate ones."""
    rows = []
    for seed in (0, 1):
        for i, w in enumerate((1, 2, 4, 8)):
            for j, d in enumerate((1, 2, 3)):
                conflicting = w <= 2
                good = (not conflicting) if seed in separating_seeds else conflicting
                acc = (0.8 if good else 0.2) + 0.01 * i + 0.003 * j  # all distinct: an exact test
                ent = (1.0 + 0.1 * (3 - i) + 0.05 * j) if conflicting else 0.0
                rows.append((seed, w, d, acc, ent))
    return _seed_table(rows)


def test_map_claims_hold_only_when_every_seed_and_the_mean_hold():
    from reproduce.experiments.fnn_map import map_claims, seed_statistics

    both = map_claims(_planted_map({0, 1}), dataset="toy", seeds=[0, 1])
    # the third row (width) is not testable here: every net of widths 1, 2 conflicts, none of 4, 8
    assert [c.holds for c in both] == [True, True, None] and [c.seeds for c in both] == [2, 2, 2]
    # 6 conflicting vs 6 clean, all lower: exact one-sided p = 1 / C(12, 6)
    assert seed_statistics(_planted_map({0, 1}))[0].p_mannwhitney == pytest.approx(1 / 924)
    assert "holds in 2 of 2 seeds (0 yes, 1 yes)" in both[0].measured
    assert "0: 6, 1: 6" in both[0].measured  # per-seed counts of conflicting nets are visible

    one = map_claims(_planted_map({0}), dataset="toy", seeds=[0, 1])
    assert [c.holds for c in one[:2]] == [False, False]
    assert "holds in 1 of 2 seeds (0 yes, 1 no)" in one[0].measured
    # a single seed: the verdict is that seed's
    only = map_claims(_planted_map({0}), dataset="toy", seeds=[0])
    assert [c.holds for c in only[:2]] == [True, True] and only[0].seeds == 1
    with pytest.raises(ValueError, match=r"seeds \[7\] have no rows; the table has seeds \[0, 1\]"):
        map_claims(_planted_map({0}), dataset="toy", seeds=[0, 7])


def test_map_claims_fail_when_only_the_seed_mean_map_fails():
    """Each seed separates on its own, but the seeds disagree on which nets conflict, so on the
    seed-mean map every net is conflicting (one group empty): the pooled form fails."""
    from reproduce.experiments.fnn_map import map_claims

    rows = []
    for seed, narrow in ((0, True), (1, False)):
        for i, w in enumerate((1, 2, 4, 8)):
            for d in (1, 2, 3):
                conflicting = (w <= 2) == narrow
                rows.append((seed, w, d, (0.2 if conflicting else 0.8) + 0.01 * i + 0.001 * d,
                             (1.0 + 0.1 * i + 0.01 * d) if conflicting else 0.0))
    claims = map_claims(_seed_table(rows), dataset="toy")
    assert "holds in 2 of 2 seeds" in claims[0].measured
    assert claims[0].holds is False and "Seed-mean map: 12 conflicting" in claims[0].measured


# --------------------------------------------------------------------------- the width row (this project's addition)


def _width_map(cells, seeds=(0,)):
    """cells: {(width, depth): (test_acc, a_L_entropy)}, the same map in every seed of ``seeds``."""
    return _seed_table([(s, w, d, acc, ent) for s in seeds for (w, d), (acc, ent) in cells.items()])


def test_width_comparison_hand_computed():
    from reproduce.experiments.fnn_map import width_comparison

    cells = {
        # width 2: conflicting (0.1, 0.3) mean 0.2 against clean 0.5: lower by 0.3
        (2, 1): (0.5, 0.0), (2, 2): (0.1, 1.0), (2, 4): (0.3, 0.4),
        # width 4: conflicting 0.6 against clean (0.4, 0.6) mean 0.5: higher by 0.1
        (4, 1): (0.4, 0.0), (4, 2): (0.6, 0.2), (4, 4): (0.6, 0.0),
        # width 8: every net clean, width 16: every net conflicting -- neither is compared
        (8, 1): (0.9, 0.0), (8, 2): (0.8, 0.0), (16, 1): (0.05, 2.0), (16, 2): (0.07, 2.0),
    }
    c = width_comparison(_width_map(cells))
    assert c.widths == (2, 4)
    assert c.differences == pytest.approx((0.3, -0.1))
    assert c.lower == 1 and c.holds is False  # 1 of 2 is not more than half


def test_width_comparison_ties_and_diverged_nets():
    from reproduce.experiments.fnn_map import width_comparison

    # equal means (0.4 against 0.4) are not lower; a diverged net is left out, so width 8 has no clean net
    t = _seed_table([(0, 2, 1, 0.4, 0.0), (0, 2, 2, 0.4, 1.0), (0, 8, 1, 0.9, 0.0, "diverged"),
                     (0, 8, 2, 0.1, 1.0), (0, 4, 1, 0.7, 0.0), (0, 4, 2, 0.2, 0.5), (0, 4, 3, 0.3, 0.1)])
    c = width_comparison(t)
    assert c.widths == (2, 4) and c.differences == pytest.approx((0.0, 0.45))
    assert c.lower == 1 and c.holds is False
    assert width_comparison(_width_map({(2, 1): (0.1, 1.0), (8, 1): (0.9, 0.0)})).holds is None
    with pytest.raises(ValueError, match=r"lacks columns \['width'\]; its columns are \['seed', 'depth'"):
        width_comparison(t.drop(columns="width"))


def _width_row(table, seeds=None):
    from reproduce.experiments.fnn_map import map_claims

    rows = map_claims(table, dataset="toy", seeds=seeds)
    assert len(rows) == 3 and "this project's addition" in rows[2].claim
    return rows[2]


def test_width_row_holds_when_conflicting_nets_are_lower_at_most_widths_in_every_seed():
    cells = {(2, 1): (0.5, 0.0), (2, 2): (0.1, 1.0),   # lower by 0.4
             (4, 1): (0.7, 0.0), (4, 2): (0.3, 0.5),   # lower by 0.4
             (8, 1): (0.6, 0.0), (8, 2): (0.8, 0.2),   # higher by 0.2
             (16, 1): (0.9, 0.0), (16, 2): (0.95, 0.0)}
    row = _width_row(_width_map(cells, seeds=(0, 1)))
    assert row.holds is True and row.verdict == "holds" and row.seeds == 2  # 2 of 3 widths > half
    assert "holds in 2 of 2 seeds" in row.measured
    assert "seed 0: lower at 2 of 3 widths (clean minus conflicting, 2: +0.400, 4: +0.400, 8: -0.200)" in row.measured
    assert "Seed-mean map: lower at 2 of 3 widths" in row.measured and "final-epoch" in row.measured


def test_width_row_does_not_hold_when_any_seed_fails():
    good = {(2, 1): (0.5, 0.0), (2, 2): (0.1, 1.0), (4, 1): (0.7, 0.0), (4, 2): (0.3, 0.5)}
    bad = {(2, 1): (0.1, 0.0), (2, 2): (0.5, 1.0), (4, 1): (0.3, 0.0), (4, 2): (0.7, 0.5)}  # conflicting higher
    table = pd.concat([_width_map(good, seeds=(0,)), _width_map(bad, seeds=(1,))], ignore_index=True)
    row = _width_row(table)
    assert row.holds is False and row.verdict == "does not hold"
    assert "holds in 1 of 2 seeds (0 yes, 1 no)" in row.measured
    assert "seed 1: lower at 0 of 2 widths" in row.measured


def test_width_row_is_not_testable_without_a_width_holding_both_groups():
    # the narrow nets conflict at every depth, the wide ones never: the boundary is all width
    cells = {(w, d): ((0.1, 1.0) if w <= 4 else (0.9, 0.0)) for w in (2, 4, 8, 16) for d in (1, 2, 4)}
    row = _width_row(_width_map(cells, seeds=(0, 1)))
    assert row.holds is None and row.verdict == "not testable"
    assert "seed 0: no width has both" in row.measured and "Seed-mean map: no width has both" in row.measured
    # a seed without such a width and one where the rule holds: not testable, nothing failed
    mixed = {**cells, (8, 1): (0.5, 0.3)}
    table = pd.concat([_width_map(cells, seeds=(0,)), _width_map(mixed, seeds=(1,))], ignore_index=True)
    row = _width_row(table)
    assert row.holds is None and "holds in 1 of 2 seeds (0 n/a, 1 yes)" in row.measured


def test_every_claim_6_row_says_which_entropy_it_reads():
    from reproduce.experiments.fnn_map import map_claims

    rows = map_claims(_planted_map({0, 1}), dataset="toy", seeds=[0, 1])
    assert all("final-epoch a^(L) entropy" in r.measured for r in rows)
    assert "not the average over training" in rows[1].measured
