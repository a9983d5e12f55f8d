"""Tests of the lesion study (reproduce/lesion.py): draws, the equality check, the distance to
bundling, the removable fraction and a tiny end-to-end run."""

import math

import pandas as pd
import pytest
import torch

from reproduce import bundles, lesion
from reproduce.bundles import bundle_stats
from reproduce.models import ModelConfig, build_model, remove_blocks
from reproduce.scales import get_scale
from reproduce.training import evaluate

TINY = ModelConfig("residual", 3, 1, 8, (1, 2, 1, 0), width=1 / 16)


# --------------------------------------------------------------------------- draws


def test_draws_are_distinct_blocks_of_the_set_and_reproducible():
    pool = [2, 5, 7, 11, 13, 17]
    a = lesion.draw_blocks(pool, 3, 15, seed=4)
    assert len(a) == 15
    for d in a:
        assert len(d) == 3 and len(set(d)) == 3  # no duplicates within a draw
        assert set(d) <= set(pool) and list(d) == sorted(d)
    assert a == lesion.draw_blocks(pool, 3, 15, seed=4)  # seeded -> reproducible
    assert a != lesion.draw_blocks(pool, 3, 15, seed=5)
    assert len(set(a)) > 1  # the draws are not all the same
    # the whole set, the only possible draw
    assert lesion.draw_blocks(pool, 6, 4, seed=0) == [tuple(pool)] * 4


@pytest.mark.parametrize("k", [0, 7, -1])
def test_draw_size_outside_the_set_is_rejected(k):
    with pytest.raises(ValueError, match="k must be in 1..6"):
        lesion.draw_blocks(range(6), k, 3, seed=0)


def test_plan_caps_k_at_the_set_size_and_skips_empty_sets():
    sets = {"conflicting": (), "non-conflicting": (1, 3), "all": (0, 1, 2, 3)}
    plan = lesion.lesion_plan(sets, 5, seed=0)
    assert set(plan["set"]) == {"non-conflicting", "all"}
    for name, members in sets.items():
        rows = plan[plan["set"] == name]
        assert sorted(rows["k"].unique()) == list(range(1, len(members) + 1))
        assert (rows.groupby("k").size() == 5).all()
        for k, removed in zip(rows["k"], rows["removed"]):
            assert len(removed) == k and set(removed) <= set(members)
    # a set's draws do not depend on which other sets are drawn
    alone = lesion.lesion_plan({"all": (0, 1, 2, 3)}, 5, seed=0)
    assert list(alone["removed"]) == list(plan[plan["set"] == "all"]["removed"])


def test_ranked_plan_orders_blocks_by_distance():
    plan = lesion.ranked_plan({0: 5.0, 1: 1.0, 2: 3.0, 3: 3.0})
    closest = list(plan[plan["set"] == "closest"]["removed"])
    farthest = list(plan[plan["set"] == "farthest"]["removed"])
    assert closest == [(1,), (1, 2), (1, 2, 3), (0, 1, 2, 3)]
    assert farthest == [(0,), (0, 2), (0, 2, 3), (0, 1, 2, 3)]


def test_evaluate_lesions_uses_smaller_nets_with_fewer_parameters():
    torch.manual_seed(0)
    model = build_model(TINY)
    g = torch.Generator().manual_seed(1)
    test = torch.utils.data.TensorDataset(torch.randn(20, 1, 8, 8, generator=g), torch.arange(20) % 3)
    plan = pd.DataFrame({"set": ["all", "all"], "k": [1, 2], "draw": [0, 0], "removed": [(1,), (1, 2)]})
    table = lesion.evaluate_lesions(model, test, plan)
    assert list(table.columns) == list(lesion.TABLE_COLUMNS)
    assert list(table["fraction"]) == [1 / 4, 2 / 4]
    full = sum(p.numel() for p in model.parameters())
    assert full > table["parameters"][0] > table["parameters"][1]
    assert table["test_acc"][1] == evaluate(remove_blocks(model, (1, 2)), test)[1]


# --------------------------------------------------------------------------- distance to bundling


LR, BS = 1e-3, 64
STEP_1 = 2.0**-23  # float32 spacing at w_max = 1.0


def rows_apart(steps, d=5, col=2):
    """Two activation rows whose max-abs difference maps to ``steps`` resolution steps at w_max = 1."""
    a = torch.zeros(2, d, dtype=torch.float64)
    a[1, col] = steps * STEP_1 * BS / LR
    a[:, 0] = 0.7  # a shared component changes nothing
    return a.to(torch.float32)


def test_resolution_step_is_the_float32_spacing():
    assert bundles.resolution_step(1.0) == STEP_1
    assert bundles.resolution_step(3.0) == 2.0**-22
    with pytest.raises(ValueError):
        bundles.resolution_step(-1.0)


def test_distance_of_two_rows_three_steps_apart_is_three():
    d = bundles.distance_to_bundling(rows_apart(3), lr=LR, batch_size=BS, weight_amplitude=1.0)
    assert d == pytest.approx(3.0, rel=1e-6)


def test_identical_rows_are_at_distance_zero_and_one_row_has_no_pair():
    a = torch.ones(3, 4)
    assert bundles.distance_to_bundling(a, lr=LR, batch_size=BS, weight_amplitude=1.0) == 0.0
    assert bundles.distance_to_bundling(a[:1], lr=LR, batch_size=BS, weight_amplitude=1.0) == math.inf


def test_distance_over_different_labels_ignores_same_label_pairs():
    a = torch.cat([rows_apart(3), rows_apart(3)[:1]])  # rows 0 and 2 identical, row 1 three steps away
    kw = dict(lr=LR, batch_size=BS, weight_amplitude=1.0)
    assert bundles.distance_to_bundling(a, **kw) == 0.0
    assert bundles.distance_to_bundling(a, labels=torch.tensor([0, 1, 0]), **kw) == pytest.approx(3.0, rel=1e-6)
    assert bundles.distance_to_bundling(a, labels=torch.tensor([0, 0, 0]), **kw) == math.inf
    small = bundles.distance_to_bundling(a, chunk_elements=1, **kw)  # row-by-row chunks, same answer
    assert small == 0.0


def test_distance_agrees_with_bundles_below_and_above_one_step():
    # a pair a quarter step apart falls into one bundle; three steps apart it does not
    y = torch.tensor([0, 1])
    kw = dict(num_classes=2, lr=LR, batch_size=BS, weight_amplitude=1.0)
    assert bundle_stats(rows_apart(0.25), y, **kw).num_bundles == 1
    assert bundle_stats(rows_apart(3), y, **kw).num_bundles == 2


def test_block_diagnostics_flags_a_planted_collapsed_branch():
    torch.manual_seed(0)
    model = build_model(TINY)
    with torch.no_grad():  # block 2's branch outputs 0 for every input: one bundle of all labels
        model.blocks[2].bn2.weight.zero_()
        model.blocks[2].bn2.bias.zero_()
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(12, 1, 8, 8, generator=g), torch.arange(12) % 3
    diag = lesion.block_diagnostics(model, x, y, num_classes=3, lr=LR, batch_size=BS)
    assert list(diag["block"]) == [0, 1, 2, 3]
    assert list(diag["conflicting"]) == [False, False, True, False]
    assert diag["distance"][2] == 0.0 and (diag["distance"].drop(index=2) > 1.0).all()


# --------------------------------------------------------------------------- summaries


def test_summary_and_removable_fraction_on_a_hand_made_table():
    table = pd.DataFrame({
        "set": ["all"] * 6 + ["conflicting"] * 2,
        "k": [1, 1, 2, 2, 3, 3, 1, 1],
        "draw": [0, 1] * 4,
        "removed": [(0,)] * 8,
        "fraction": [0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 0.25, 0.25],
        "parameters": [1] * 8,
        "test_acc": [0.90, 0.90, 0.90, 0.88, 0.70, 0.60, 0.5, 0.7],
    })
    s = lesion.summarize(table)
    row = s[(s["set"] == "all") & (s["k"] == 2)].iloc[0]
    assert row["mean"] == pytest.approx(0.89) and row["std"] == pytest.approx(0.02 / math.sqrt(2))
    assert s[(s["set"] == "conflicting")]["std"].iloc[0] == pytest.approx(math.sqrt(0.02))
    # full net 0.895: k=2 (mean 0.89) is within one point, k=3 (0.65) is not -> 2 of 4 blocks
    assert lesion.removable_fraction(s, 0.895, set_name="all", num_blocks=4) == (0.5, 2)
    assert lesion.removable_fraction(s, 0.905, set_name="all", num_blocks=4) == (0.25, 1)  # k=1 at 0.90
    assert lesion.removable_fraction(s, 0.99, set_name="all", num_blocks=4) == (0.0, 0)
    assert lesion.removable_fraction(s, 0.5, set_name="non-conflicting", num_blocks=4) == (0.0, 0)


def test_conflict_history_counts_conflicting_branch_taps_per_epoch():
    def tap(block, role, conflicting):
        return {"tap": f"b{block}.{role}", "layer": 0, "role": role, "block": block, "stage": 0,
                "num_bundles": 1, "entropy": 0.5 if conflicting else 0.0, "max_accuracy": 1.0,
                "conflicting": conflicting}

    history = [
        {"epoch": 1, "test_acc": 0.3, "bundles": [tap(0, "branch", True), tap(0, "output", True),
                                                  tap(1, "branch", True), tap(1, "output", False)],
         "branch_distances": [{"block": 0, "distance": 0.0}, {"block": 1, "distance": 4.0}]},
        {"epoch": 2, "test_acc": 0.5, "bundles": [tap(0, "branch", False), tap(0, "output", True),
                                                  tap(1, "branch", True), tap(1, "output", False)]},
    ]
    h = lesion.conflict_history(history)
    assert list(h["conflicting_blocks"]) == [2, 1] and list(h["num_blocks"]) == [2, 2]
    assert h["median_distance"][0] == 2.0 and math.isnan(h["median_distance"][1])


# --------------------------------------------------------------------------- end to end


def test_tiny_study_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRODUCE_ROOT", str(tmp_path))
    torch.set_num_threads(1)
    P = get_scale("smoke").replace(train_limit=96, lesion_epochs=1, lesion_depth=10, lesion_draws=2)
    res = lesion.run_lesion_study(P, seed=0, progress=False)
    assert res.run.status == "finished" and res.run.epochs_done == 1
    assert list(res.table.columns) == list(lesion.TABLE_COLUMNS)
    assert tuple(res.sets) == lesion.SET_NAMES and res.sets["all"] == (0, 1, 2, 3)
    assert set(res.sets["conflicting"]) | set(res.sets["non-conflicting"]) == {0, 1, 2, 3}
    for name, members in res.sets.items():
        rows = res.table[res.table["set"] == name]
        assert len(rows) == 2 * len(members)  # draws x (k = 1..|set|)
    assert list(res.comparison["net"]) == ["full", "without conflicting blocks"]
    assert list(res.history["epoch"]) == [1] and not res.history["median_distance"].isna().any()
    assert (tmp_path / "results" / "smoke" / "lesion").is_dir()
    claims = lesion.lesion_claims(res)
    conf, non = res.sets["conflicting"], res.sets["non-conflicting"]
    assert len(claims) == 4
    assert (claims[0].verdict == "not testable") == (not conf)  # 4a needs a conflicting block
    assert (claims[1].verdict == "not testable") == (not conf or not non)  # 4b needs both sets
    assert claims[2].verdict in ("holds", "does not hold")  # 4c is always testable

    # a second call reuses the finished run and the cached lesion tables
    def no_evaluation(*args, **kwargs):
        raise AssertionError("the cached lesion table should have been reused")

    monkeypatch.setattr(lesion, "evaluate_lesions", no_evaluation)
    again = lesion.run_lesion_study(P, seed=0, progress=False)
    pd.testing.assert_frame_equal(again.table, res.table)
    assert again.full_accuracy == res.full_accuracy
