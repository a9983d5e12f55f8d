"""Notebook 08's study (reproduce.experiments.beyond) and its offline text (reproduce.data.text):
the claims rule on hand-made comparisons, the windows of the text by hand, the presets' sizes."""

import pandas as pd
import pytest
import torch

from reproduce.config.scales import get_scale
from reproduce.data.text import char_lm_data, python_topics_text
from reproduce.experiments import beyond


def comparison(values: dict, removed: dict, metric: str = "test_acc", healed: bool = False) -> pd.DataFrame:
    """A ranking comparison with the given values and removed blocks per (ranking, k)."""
    rows = [{"ranking": "none", "k": 0, "removed": "", "healed": healed, "metric": metric, "value": 0.5}]
    for (ranking, k), v in values.items():
        rows.append({"ranking": ranking, "k": k, "removed": removed[(ranking, k)], "healed": healed, "metric": metric,
                     "value": v})
    return pd.DataFrame(rows)


def study(seed: int, values: dict, removed: dict, metric: str = "test_acc", name: str = "ViT (timm)"):
    c = pd.concat([comparison(values, removed, metric, False), comparison(values, removed, metric, True)])
    return beyond.BeyondStudy(name, seed, pd.DataFrame(), c)


DIFFERENT = {("entropy", 1): "0", ("block_influence", 1): "3", ("entropy", 2): "0 1", ("block_influence", 2): "3 4"}
SAME_AT_1 = {("entropy", 1): "3", ("block_influence", 1): "3", ("entropy", 2): "0 3", ("block_influence", 2): "3 4"}


def test_the_rule_holds_only_when_the_label_aware_ranking_is_better_at_every_differing_k():
    better = {("entropy", 1): 0.9, ("block_influence", 1): 0.8, ("entropy", 2): 0.7, ("block_influence", 2): 0.6}
    worse_at_2 = {**better, ("entropy", 2): 0.5}
    tie_at_1 = {**better, ("entropy", 1): 0.8}
    claims = beyond.ranking_claims([study(0, better, DIFFERENT), study(1, better, DIFFERENT)])
    assert [c.verdict for c in claims] == ["holds", "holds"] and claims[0].seeds == 2
    claims = beyond.ranking_claims([study(0, better, DIFFERENT), study(1, worse_at_2, DIFFERENT)])
    assert claims[0].verdict == "does not hold" and "1 no" in claims[0].measured
    # a tie is not "more"
    assert beyond.ranking_claims([study(0, tie_at_1, DIFFERENT)])[0].verdict == "does not hold"
    # where both remove the same blocks the k does not count: k = 1 is skipped here
    assert beyond.ranking_claims([study(0, tie_at_1, SAME_AT_1)])[0].verdict == "holds"


def test_same_blocks_at_every_k_cannot_test_the_rule():
    same = {("entropy", 1): "3", ("block_influence", 1): "3", ("entropy", 2): "3 4", ("block_influence", 2): "3 4"}
    values = {("entropy", 1): 0.8, ("block_influence", 1): 0.8, ("entropy", 2): 0.7, ("block_influence", 2): 0.7}
    assert beyond.ranking_claims([study(0, values, same)])[0].verdict == "not testable"


def test_perplexity_is_better_when_lower():
    lower = {("entropy", 1): 10.0, ("block_influence", 1): 12.0, ("entropy", 2): 14.0, ("block_influence", 2): 15.0}
    claims = beyond.ranking_claims([study(0, lower, DIFFERENT, "perplexity", "GPT-2 (transformers)")])
    assert [c.verdict for c in claims] == ["holds", "holds"] and "perplexity (lower)" in claims[0].measured


def test_text_windows_by_hand():
    text = python_topics_text()
    data = char_lm_data(context=8, train_chars=81)
    assert data.num_classes == len(set(text)) and data.vocabulary == "".join(sorted(set(text)))
    x, y = data.train.tensors
    assert x.shape == (10, 8) and y.shape == (10, 8)  # (81 - 1) // 8 windows
    assert data.decode(x[0]) == text[:8] and data.decode(y[0]) == text[1:9]
    assert data.decode(x[1]) == text[8:16]
    cut = int(round(len(text) * 0.9))
    assert data.decode(data.test.tensors[0][0]) == text[cut:cut + 8]
    assert len(data.identity["sha256"]) == 64
    with pytest.raises(ValueError, match=r"context must be an int >= 1, got 0"):
        char_lm_data(context=0)


def test_presets_sizes():
    smoke, cpu = beyond.BeyondConfig.from_scale(get_scale("smoke")), beyond.BeyondConfig.from_scale(get_scale("cpu"), 5)
    assert smoke.ks == (1,) and smoke.seeds == (0,) and smoke.vit_epochs == smoke.lm_epochs == 2
    assert cpu.seeds == (5, 6, 7) and cpu.ks == (1, 2, 3) and cpu.vit_depth == cpu.lm_layers == 6
    assert (cpu.vit_epochs, cpu.lm_epochs, cpu.heal_epochs, cpu.lm_positions) == (60, 15, 1, 512)


def test_lm_logits_are_batch_classes_positions():
    pytest.importorskip("transformers")
    cfg = beyond.BeyondConfig.from_scale(get_scale("smoke"))
    lm = beyond.build_char_gpt2(cfg, vocabulary=11, seed=0)
    out = beyond.LMLogits(lm)(torch.zeros(2, 5, dtype=torch.int64))
    assert out.shape == (2, 11, 5)
    again = beyond.build_char_gpt2(cfg, vocabulary=11, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(lm.state_dict().values(), again.state_dict().values()))


def test_distinct_positions_drop_repeated_visible_inputs_by_hand():
    # visible inputs (t, prefix): window 0 (0,1) (1,1,2) (2,1,2,3); window 1 repeats the first two and
    # adds (2,1,2,4); window 2 (0,5) (1,5,2) (2,5,2,3): 9 positions, 7 distinct
    x = torch.tensor([[1, 2, 3], [1, 2, 4], [5, 2, 3]])
    y = torch.tensor([[2, 3, 9], [2, 4, 8], [2, 3, 7]])
    for seed in range(4):
        ids, labels = beyond.distinct_positions(x, y, 7, seed=seed)
        order = [next(w for w in range(3) if torch.equal(ids[i], x[w])) for i in range(len(ids))]
        assert sorted(order) == [0, 1, 2]
        first, second = (0, 1) if order.index(0) < order.index(1) else (1, 0)
        expected = {(first, 0), (first, 1), (first, 2), (second, 2), (2, 0), (2, 1), (2, 2)}
        got = {(order[i], t) for i in range(3) for t in range(3) if labels[i, t] != -100}
        assert got == expected
        assert all(labels[i, t] == y[order[i], t] for i in range(3) for t in range(3) if labels[i, t] != -100)
    ids, labels = beyond.distinct_positions(x, y, 2, seed=0)
    assert len(ids) == 1 and int((labels != -100).sum()) == 2  # the first window's first two positions
    with pytest.raises(ValueError, match=r"only 7 distinct positions, fewer than n = 8"):
        beyond.distinct_positions(x, y, 8, seed=0)
