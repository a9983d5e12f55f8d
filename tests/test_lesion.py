"""Tests of the lesion study (reproduce/experiments/lesion.py): draws, the equality check, the distance to
bundling, the removable fraction and a tiny end-to-end run."""

import dataclasses
import math

import pandas as pd
import pytest
import torch

from reproduce.metric import bundles
from reproduce.experiments import lesion
from reproduce.metric.bundles import bundle_stats
from reproduce.models.nets import ModelConfig, build_model, remove_blocks
from reproduce.config.scales import get_scale
from reproduce.training.loop import evaluate

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


def test_plan_draws_k_1_to_n_minus_1_as_released_and_skips_empty_sets():
    """Released: k = 1..n-1 for a set of n blocks (a one-block set has no row); ``whole_set=True``
    adds k = n (rounds 1-3, whose test pinned 1..n)."""
    sets = {"conflicting": (), "single": (2,), "non-conflicting": (1, 3), "all": (0, 1, 2, 3)}
    plan = lesion.lesion_plan(sets, 5, seed=0)
    assert set(plan["set"]) == {"non-conflicting", "all"}
    assert sorted(plan[plan["set"] == "all"]["k"].unique()) == [1, 2, 3]
    assert sorted(plan[plan["set"] == "non-conflicting"]["k"].unique()) == [1]
    whole = lesion.lesion_plan(sets, 5, seed=0, whole_set=True)
    assert set(whole["set"]) == {"single", "non-conflicting", "all"}
    assert sorted(whole[whole["set"] == "all"]["k"].unique()) == [1, 2, 3, 4]
    # the rows k < n are the same draws either way
    below = whole[(whole["set"] == "all") & (whole["k"] < 4)]
    assert list(below["removed"]) == list(plan[plan["set"] == "all"]["removed"])
    for name, members in sets.items():
        rows = whole[whole["set"] == name]
        assert sorted(rows["k"].unique()) == list(range(1, len(members) + 1))
        assert (rows.groupby("k").size() == 5).all()
        for k, removed in zip(rows["k"], rows["removed"]):
            assert len(removed) == k and set(removed) <= set(members)
    # a set's draws do not depend on which other sets are drawn
    alone = lesion.lesion_plan({"all": (0, 1, 2, 3)}, 5, seed=0, whole_set=True)
    assert list(alone["removed"]) == list(whole[whole["set"] == "all"]["removed"])


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
    # released: population std (ddof 0): 0.90, 0.88 -> 0.01; 0.5, 0.7 -> 0.1
    s = lesion.summarize(table)
    row = s[(s["set"] == "all") & (s["k"] == 2)].iloc[0]
    assert row["mean"] == pytest.approx(0.89) and row["std"] == pytest.approx(0.01)
    assert s[(s["set"] == "conflicting")]["std"].iloc[0] == pytest.approx(0.1)
    assert s[(s["set"] == "all") & (s["k"] == 1)]["std"].iloc[0] == 0.0  # equal draws
    # ddof=1 (rounds 1-3): the sample std, sqrt(2) times larger for two draws
    s1 = lesion.summarize(table, ddof=1)
    assert s1[(s1["set"] == "all") & (s1["k"] == 2)]["std"].iloc[0] == pytest.approx(0.02 / math.sqrt(2))
    assert s1[(s1["set"] == "conflicting")]["std"].iloc[0] == pytest.approx(math.sqrt(0.02))
    with pytest.raises(ValueError, match="ddof must be 0 .* or 1, got 2"):
        lesion.summarize(table, ddof=2)
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
    P = get_scale("smoke").replace(train_limit=96, lesion_epochs=1, lesion_depth=10, lesion_draws=2, repeats=2)
    seeds = range(0, P.repeats)
    studies = lesion.run_lesion_studies(P, seeds, progress=False)
    assert studies.seeds == (0, 1)
    # each seed is its own run (the runs run_specs lists), with its own draws
    assert len({str(r.run.run_dir) for r in studies.results}) == 2
    assert {str(s.run_dir) for s in lesion.run_specs(P, seeds=seeds)} == {str(r.run.run_dir) for r in studies.results}
    assert list(studies.summary.columns) == ["seed", "set", "k", "fraction", "mean", "std", "draws"]
    assert sorted(set(studies.history["seed"])) == [0, 1] and "inference_ms" in studies.comparison
    over = lesion.lesion_claims_over_seeds(studies)
    assert [c.seeds for c in over] == [2] * 4
    per_seed = [lesion.lesion_claims(r) for r in studies.results]
    for i, claim in enumerate(over):  # a claim holds over seeds only if it holds in every seed
        if claim.verdict == "holds":
            assert all(c[i].verdict == "holds" for c in per_seed)
        if any(c[i].verdict == "does not hold" for c in per_seed):
            assert claim.verdict == "does not hold"
    res = studies.results[0]
    assert res.run.status == "finished" and res.run.epochs_done == 1
    assert list(res.table.columns) == list(lesion.TABLE_COLUMNS)
    assert tuple(res.sets) == lesion.SET_NAMES and res.sets["all"] == (0, 1, 2, 3)
    assert set(res.sets["conflicting"]) | set(res.sets["non-conflicting"]) == {0, 1, 2, 3}
    for name, members in res.sets.items():
        rows = res.table[res.table["set"] == name]
        assert len(rows) == 2 * max(len(members) - 1, 0)  # draws x (k = 1..|set|-1, as released)
    assert list(res.comparison["net"]) == ["full", "without conflicting blocks"]
    trained = res.history[res.history["epoch"] >= 1]  # an epoch-0 record (the untrained net) may precede
    assert list(trained["epoch"]) == [1] and not res.history["median_distance"].isna().any()
    assert (tmp_path / "results" / "smoke" / "lesion").is_dir()
    # the claim-4 diagnostics of the last epoch describe the final weights the study acts on
    diag = studies.diagnostics
    last = diag[(diag["seed"] == 0) & (diag["epoch"] == 1)].iloc[0]
    assert last.w_max == bundles.weight_amplitude(res.run.model)
    assert last.gamma_abs_mean == pytest.approx(lesion.branch_gammas(res.run.model)["gamma_abs_mean"].mean())
    assert 0 <= last.conflicting_sensitivity <= 4 and last.sensitivity_samples > P.sample_size
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


# --------------------------------------------------------------------------- several seeds


def test_run_specs_trains_one_net_per_seed():
    P = get_scale("smoke")
    specs = lesion.run_specs(P, seeds=range(3, 5))
    assert [s.train.seed for s in specs] == [3, 4] and [s.data.seed for s in specs] == [3, 4]
    assert len({s.run_dir for s in specs}) == 2
    assert specs[1] == lesion.lesion_spec(P, lesion.LesionConfig.from_scale(P, seed=4))
    for bad, message in (((), "at least one seed"), ((1, 1), "distinct"), ((-1,), "int >= 0"), (("0",), "int >= 0")):
        with pytest.raises(ValueError, match=message):
            lesion.run_specs(P, seeds=bad)


def test_over_seed_summary_on_a_hand_made_table():
    frame = pd.DataFrame({"seed": [0, 1, 2, 0, 1, 2], "set": ["all"] * 6, "k": [1, 1, 1, 2, 2, 2],
                          "mean": [0.9, 0.6, 0.75, 0.2, math.nan, 0.4]})
    s = lesion.over_seed_summary(frame)
    assert list(s.columns) == ["set", "k", "mean", "min", "max", "seeds"]
    assert list(s["k"]) == [1, 2]
    assert s["mean"][0] == pytest.approx(0.75) and (s["min"][0], s["max"][0]) == (0.6, 0.9)
    assert s["mean"][1] == pytest.approx(0.3) and list(s["seeds"]) == [3, 2]  # NaN left out
    with pytest.raises(ValueError, match="one row per seed"):
        lesion.over_seed_summary(pd.concat([frame, frame.iloc[:1]]))
    with pytest.raises(ValueError, match="'seed'"):
        lesion.over_seed_summary(frame.drop(columns="seed"))


def summary_rows(curves):
    """A summary frame from ``{set: [(mean, std) for k = 1, 2, ...]}``."""
    rows = [{"set": name, "k": k, "fraction": k / 4, "mean": m, "std": sd, "draws": 2}
            for name, values in curves.items() for k, (m, sd) in enumerate(values, start=1)]
    return pd.DataFrame(rows, columns=["set", "k", "fraction", "mean", "std", "draws"])


def planted(seed, *, conflicting=(), full=0.9, pruned=None, all_curve=(0.5, 0.5, 0.5, 0.1),
            closest=(0.5, 0.5, 0.5, 0.1), farthest=(0.5, 0.5, 0.5, 0.1), extra=None):
    """A LesionResult of 4 blocks built by hand (no training): what the claims read."""
    every = (0, 1, 2, 3)
    sets = {"conflicting": tuple(conflicting), "non-conflicting": tuple(b for b in every if b not in conflicting),
            "all": every}
    summary = summary_rows({"all": [(m, 0.0) for m in all_curve], **(extra or {})})
    ranked = summary_rows({"closest": [(m, 0.0) for m in closest], "farthest": [(m, 0.0) for m in farthest]})
    frac, k = lesion.removable_fraction(summary, full, set_name="all", num_blocks=4)
    comparison = pd.DataFrame({"net": ["full", "without conflicting blocks"], "test_acc": [full, pruned or full]})
    cfg = lesion.LesionConfig("digits", 10, 1, 2, 1 / 16, 64, 1e-3, 64, seed=seed)
    return lesion.LesionResult(config=cfg, run=None, full_accuracy=full, blocks=pd.DataFrame({"block": every}),
                               sets=sets, table=pd.DataFrame(), summary=summary, ranked=pd.DataFrame(),
                               ranked_summary=ranked, removable={"set": "all", "fraction": frac, "k": k,
                                                                 "fraction_all": frac, "k_all": k},
                               comparison=comparison, history=pd.DataFrame({"epoch": [1]}))


def verdicts(results):
    claims = lesion.lesion_claims_over_seeds(lesion.LesionStudies(results))
    assert [c.seeds for c in claims] == [len(results)] * 4
    return {c.claim.split(":")[0].split(" ")[0]: c for c in claims}


def test_4a_over_seeds_fails_in_one_seed_and_is_untestable_without_conflicting_blocks():
    good = dict(conflicting=(0, 1, 2), pruned=0.895)  # 3/4 conflicting, 0.5 point lost: holds
    bad = dict(conflicting=(0, 1), pruned=0.85)  # 2/4 conflicting but 5 points lost: fails
    assert verdicts([planted(0, **good), planted(1, **good)])["4a"].verdict == "holds"
    both = verdicts([planted(0, **good), planted(1, **bad)])["4a"]
    assert both.verdict == "does not hold"
    assert "holds in 1 of 2 seeds (0 yes, 1 no)" in both.measured and "0: -0.005, 1: -0.050" in both.measured
    assert verdicts([planted(0, **good), planted(1)])["4a"].verdict == "not testable"
    none = verdicts([planted(0), planted(1)])
    assert none["4a"].verdict == "not testable" and "nothing to remove" in none["4a"].measured
    assert none["4b"].verdict == "not testable" and "0: 0/4, 1: 0/4" in none["4b"].measured


def test_4b_over_seeds_is_decided_per_seed():
    # k* = 1: non-conflicting removed 0.60 vs conflicting removed 0.85 with stds 0.05 -> holds
    hurts = {"conflicting": [(0.85, 0.05)], "non-conflicting": [(0.60, 0.02), (0.4, 0.0), (0.3, 0.0)]}
    close = {"conflicting": [(0.85, 0.05)], "non-conflicting": [(0.82, 0.02), (0.4, 0.0), (0.3, 0.0)]}
    holds = verdicts([planted(0, conflicting=(0,), extra=hurts), planted(1, conflicting=(3,), extra=hurts)])
    assert holds["4b"].verdict == "holds"
    mixed = verdicts([planted(0, conflicting=(0,), extra=hurts), planted(1, conflicting=(3,), extra=close)])
    assert mixed["4b"].verdict == "does not hold" and "0: 0.600, 1: 0.820" in mixed["4b"].measured


def test_4b_compares_at_the_largest_k_both_sets_have_under_the_released_range():
    # released lesion: k = 1..n-1, so sets of 2 and 2 blocks have rows k = 1 only; k* = 1, not 2
    hurts = {"conflicting": [(0.85, 0.05)], "non-conflicting": [(0.60, 0.02)]}
    v = verdicts([planted(0, conflicting=(0, 1), extra=hurts)])["4b"]
    assert v.verdict == "holds" and "at k* = 1" in v.measured
    # a set of one block has no row at all (k = 1..0): nothing to compare, not testable
    lone = {"non-conflicting": [(0.60, 0.02), (0.4, 0.0)]}
    v = verdicts([planted(0, conflicting=(0,), extra=lone)])["4b"]
    assert v.verdict == "not testable" and "no k" in v.measured


def test_4c_holds_in_every_seed_but_not_on_the_seed_mean_curve():
    # seed 0 keeps the accuracy at k = 2 only, seed 1 at k = 3 only: each seed removes >= half of
    # the blocks, but the seed-mean curve (0.5, 0.7, 0.7, 0.1) never comes within a point of 0.9
    s0 = planted(0, all_curve=(0.5, 0.9, 0.5, 0.1))
    s1 = planted(1, all_curve=(0.5, 0.5, 0.9, 0.1))
    assert (s0.removable["k_all"], s1.removable["k_all"]) == (2, 3)
    c = verdicts([s0, s1])["4c"]
    assert c.verdict == "does not hold"
    assert "holds in 2 of 2 seeds" in c.measured and "0: 0.50, 1: 0.75" in c.measured
    assert "seed-mean curve: 0/4" in c.measured
    same = verdicts([s0, planted(1, all_curve=(0.5, 0.9, 0.5, 0.1))])["4c"]
    assert same.verdict == "holds" and "seed-mean curve: 2/4 = 50 %" in same.measured


def test_addition_holds_in_every_seed_but_not_on_the_seed_means():
    far = (0.5, 0.5, 0.5, 0.1)
    # closest - farthest over k = 1..3: seed 0 (+.2, +.2, -.3), seed 1 (-.3, +.2, +.2): 2 wins of 3
    # and +3.3 points each; the seed means (-.05, +.2, -.05) win once only
    s0 = planted(0, closest=(0.7, 0.7, 0.2, 0.1), farthest=far)
    s1 = planted(1, closest=(0.2, 0.7, 0.7, 0.1), farthest=far)
    alone = verdicts([s0])["addition"]
    assert alone.verdict == "holds" and "+3.3" in alone.measured
    c = verdicts([s0, s1])["addition"]
    assert c.verdict == "does not hold" and "holds in 2 of 2 seeds" in c.measured
    assert "seed means: closest better at 1/3 k" in c.measured
    assert verdicts([s0, planted(1, closest=(0.7, 0.7, 0.2, 0.1), farthest=far)])["addition"].verdict == "holds"


def test_studies_stack_tables_by_seed_and_reject_mixed_studies():
    studies = lesion.LesionStudies([planted(4, all_curve=(0.8, 0.7, 0.6, 0.1)), planted(2)])
    assert studies.seeds == (4, 2)
    s = studies.summary
    assert list(s.columns)[0] == "seed" and list(s["seed"]) == [4] * 4 + [2] * 4
    assert list(s[s["seed"] == 4]["mean"]) == [0.8, 0.7, 0.6, 0.1]
    assert list(studies.removable["seed"]) == [4, 2]
    with pytest.raises(ValueError, match="once"):
        lesion.LesionStudies([planted(1), planted(1)])
    with pytest.raises(ValueError, match="at least one seed"):
        lesion.LesionStudies([])
    short = planted(3)
    short.sets = {**short.sets, "all": (0, 1, 2)}
    with pytest.raises(ValueError, match=r"block counts \[3, 4\]"):
        lesion.LesionStudies([planted(1), short])


def test_claims_rows_carry_no_timing():
    res = planted(0, conflicting=(0, 1, 2), pruned=0.895)
    res.comparison = res.comparison.assign(inference_ms=[1.234567, 0.987654])
    for c in lesion.lesion_claims(res):
        assert "1.23" not in c.measured and "0.98" not in c.measured and "ms" not in c.measured


def test_steps_per_epoch_counts_full_batches_and_passes():
    from reproduce.training.loop import TrainConfig

    # digits: 1,437 training images at batch 64 -> 22 full batches (22 * 64 = 1,408), 23 with the partial one
    assert TrainConfig(epochs=1).steps_per_epoch(1437) == 22
    assert TrainConfig(epochs=1, drop_last=False).steps_per_epoch(1437) == 23
    assert TrainConfig(epochs=1, passes=36).steps_per_epoch(1437) == 792
    history = [{"epoch": 2, "bundles": [{"tap": "b", "layer": 0, "role": "branch", "block": 0, "stage": 0,
                                         "num_bundles": 3, "entropy": 0.0, "max_accuracy": 1.0, "conflicting": False}]}]
    assert lesion.conflict_history(history, 792)["steps"].tolist() == [1584]


def test_lesion_config_defaults_are_the_released_range_and_std():
    cfg = lesion.LesionConfig("digits", 10, 1, 2, 1 / 16, 64, 1e-3, 64)
    assert cfg.whole_set is False and cfg.std_ddof == 0
    with pytest.raises(ValueError, match="std_ddof must be 0 .* or 1, got 2"):
        lesion.LesionConfig("digits", 10, 1, 2, 1 / 16, 64, 1e-3, 64, std_ddof=2)
    with pytest.raises(ValueError, match="whole_set must be True or False, got 1"):
        lesion.LesionConfig("digits", 10, 1, 2, 1 / 16, 64, 1e-3, 64, whole_set=1)


# --------------------------------------------------------------------------- claim-4 diagnostics


def test_branch_gammas_reads_planted_second_batch_norm_weights():
    model = build_model(TINY)
    bn = model.blocks[1].bn2
    n = bn.weight.numel()
    with torch.no_grad():  # |gamma| = 0.1, 0.2, ..., n/10 with alternating signs
        bn.weight.copy_(torch.tensor([(-1) ** i * (i + 1) / 10 for i in range(n)]))
        model.blocks[3].bn2.weight.fill_(-2.0)
    g = lesion.branch_gammas(model).set_index("block")
    assert list(g.index) == [0, 1, 2, 3] and list(g["stage"]) == [0, 1, 1, 2]
    assert g.loc[1, "gamma_abs_mean"] == pytest.approx((n + 1) / 20)
    assert g.loc[1, "gamma_abs_min"] == pytest.approx(0.1) and g.loc[1, "gamma_abs_max"] == pytest.approx(n / 10)
    assert g.loc[3, ["gamma_abs_mean", "gamma_abs_min", "gamma_abs_max"]].tolist() == [2.0, 2.0, 2.0]
    # a removed block has no branch, so no row
    assert list(lesion.branch_gammas(remove_blocks(model, [1]))["block"]) == [0, 2, 3]
    with pytest.raises(ValueError, match="ConvNet"):
        lesion.branch_gammas(torch.nn.Linear(2, 2))


def _constant_branches(model, blocks):
    with torch.no_grad():  # gamma = beta = 0: the branch outputs 0 for every input
        for b in blocks:
            model.blocks[b].bn2.weight.zero_()
            model.blocks[b].bn2.bias.zero_()
    return model


def test_conflicting_branches_at_512_samples_are_the_planted_constant_ones():
    torch.manual_seed(0)
    model = _constant_branches(build_model(TINY), [1, 3])
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(512, 1, 8, 8, generator=g), torch.arange(512) % 3
    assert lesion.conflicting_branches(model, x, y, num_classes=3, lr=LR, batch_size=BS) == [1, 3]
    # one label only: a constant branch is one bundle, but not a conflicting one
    same = torch.zeros(512, dtype=torch.long)
    assert lesion.conflicting_branches(model, x, same, num_classes=3, lr=LR, batch_size=BS) == []


def test_diagnostics_callback_records_w_max_gammas_and_the_512_count(toy_data):
    from types import SimpleNamespace
    from reproduce.training.loop import TrainConfig
    torch.manual_seed(0)
    model = _constant_branches(build_model(TINY), [2])
    data = toy_data(n=600)
    spec = SimpleNamespace(train=TrainConfig(epochs=1, lr=LR, batch_size=BS))
    record = {"epoch": 1}
    lesion.diagnostics_callback(data, spec, sample_size=512, seed=0)(model, 1, record)
    assert record["sensitivity_samples"] == 512 and record["sensitivity_conflicting"] == [2]
    assert [r["gamma_abs_max"] for r in record["branch_gamma"]][2] == 0.0
    with torch.no_grad():  # the largest |parameter| is w_max (it also coarsens the resolution: count not checked)
        model.blocks[0].conv1.weight[0, 0, 0, 0] = 7.5
    lesion.diagnostics_callback(data, spec, sample_size=512, seed=0)(model, 1, record)
    assert record["w_max"] == 7.5
    small = {"epoch": 1}
    lesion.diagnostics_callback(toy_data(n=96), spec, sample_size=512, seed=0)(model, 1, small)
    assert small["sensitivity_samples"] == 96  # capped at the training set
    with pytest.raises(ValueError, match="valid choices are fresh, fixed"):
        lesion.diagnostics_callback(data, spec, sample_size=512, seed=0, samples="both")


def test_diagnostics_history_on_hand_made_records():
    branch = lambda hs: [{"tap": f"b{i}", "role": "branch", "entropy": h} for i, h in enumerate(hs)]  # noqa: E731
    gam = lambda *g: [{"block": i, "gamma_abs_mean": m, "gamma_abs_min": lo, "gamma_abs_max": hi}  # noqa: E731
                      for i, (m, lo, hi) in enumerate(g)]
    history = [
        {"epoch": 0, "bundles": branch([0.0, 0.0])},  # no diagnostics recorded: no row
        {"epoch": 1, "w_max": 2.0, "bundles": branch([0.0, 0.3]), "branch_gamma": gam((1.0, 0.5, 1.5), (0.2, 0.0, 0.4)),
         "sensitivity_conflicting": [0, 1], "sensitivity_samples": 512},
    ]
    t = lesion.diagnostics_history(history)
    assert list(t["epoch"]) == [1]
    row = t.iloc[0]
    assert (row.w_max, row.gamma_abs_mean, row.gamma_abs_min, row.gamma_abs_max_min) == (2.0, 0.6, 0.0, 0.4)
    assert (row.conflicting, row.conflicting_sensitivity, row.sensitivity_samples) == (1, 2, 512)


def test_lesion_spec_declares_the_diagnostics_hook_unless_switched_off():
    smoke = get_scale("smoke")
    on = lesion.lesion_spec(smoke, lesion.LesionConfig.from_scale(smoke))
    off = lesion.lesion_spec(smoke, lesion.LesionConfig.from_scale(smoke, diagnostics=False))
    hooks = {h.target: dict(h.kwargs) for h in on.callbacks}
    assert hooks["reproduce.lesion:diagnostics_callback"]["sample_size"] == 512
    assert [h.target for h in off.callbacks] == ["reproduce.bundles:bundle_callback", "reproduce.lesion:distance_callback"]
    assert on.run_dir != off.run_dir
    with pytest.raises(ValueError, match="sensitivity_samples"):
        lesion.LesionConfig.from_scale(smoke, sensitivity_samples=0)


def test_last_sensitivity_reads_the_last_record_with_the_512_count():
    history = [{"epoch": 0, "sensitivity_conflicting": [0, 1, 2], "sensitivity_samples": 512},
               {"epoch": 1, "sensitivity_conflicting": [3], "sensitivity_samples": 512},
               {"epoch": 2}]  # a record without diagnostics is skipped
    assert lesion.last_sensitivity(history) == (1, 512)
    assert lesion.last_sensitivity([{"epoch": 1}]) is None


def test_4a_reports_the_512_count_beside_the_64_verdict_without_deciding():
    from types import SimpleNamespace

    def with_count(result, blocks):
        hist = [{"epoch": 1, "sensitivity_conflicting": list(blocks), "sensitivity_samples": 512}]
        return dataclasses.replace(result, run=SimpleNamespace(history=hist))
    # at N = 64 no block conflicts (not testable); at N = 512 three and one do: still not testable
    row = verdicts([with_count(planted(0), (0, 1, 2)), with_count(planted(1), (3,))])["4a"]
    assert row.verdict == "not testable"
    assert "sensitivity check, not the verdict: conflicting branches at N = 512" in row.measured
    assert "0: 3, 1: 1" in row.measured
    # runs trained without the diagnostics: nothing reported
    assert "sensitivity" not in verdicts([planted(0), planted(1)])["4a"].measured
