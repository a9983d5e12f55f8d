"""Notebook 08's study (reproduce.experiments.beyond) and its offline text (reproduce.data.text):
the claims rule on hand-made comparisons, the windows of the text by hand, the presets' sizes, and
the paper preset's pretrained-model path run offline on tiny models saved locally."""

import dataclasses
import math

import pandas as pd
import pytest
import torch

from reproduce.config.scales import get_scale
from reproduce.data import text as text_mod
from reproduce.data.datasets import load_dataset
from reproduce.data.text import char_lm_data, python_topics_text
from reproduce.experiments import beyond
from reproduce.training.loop import evaluate


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


# --------------------------------------------------------------------------- the paper preset's hub path


def test_paper_preset_uses_pretrained_hub_models_untrained():
    paper = beyond.BeyondConfig.from_scale(get_scale("paper"), 2)
    assert (paper.vit_hub, paper.lm_hub, paper.vit_dataset) == ("deit_tiny_patch16_224.fb_in1k", "gpt2", "imagenette")
    assert paper.vit_epochs == paper.lm_epochs == 0 and paper.heal_epochs == 1 and paper.ks == (1, 2, 3, 4, 5, 6)
    assert paper.heal_lr == 1e-4 and paper.device == "auto" and paper.vit_classes[:3] == (0, 217, 482)
    cpu = beyond.BeyondConfig.from_scale(get_scale("cpu"))
    assert cpu.vit_hub is cpu.lm_hub is cpu.heal_lr is None and cpu.device == "cpu"


def test_token_lm_data_windows_by_hand():
    # a "tokenizer" giving each character's code point mod 5: the windows are that sequence cut by hand
    text = python_topics_text()
    ids = [ord(c) % 5 for c in text]
    data = text_mod.token_lm_data(lambda t: [ord(c) % 5 for c in t], vocabulary_size=5, tokenizer="mod5", context=4,
                                  train_tokens=13)
    x, y = data.train.tensors
    assert x.tolist() == [ids[0:4], ids[4:8], ids[8:12]] and y.tolist() == [ids[1:5], ids[5:9], ids[9:13]]
    cut = int(round(len(ids) * 0.9))
    assert data.test.tensors[0][0].tolist() == ids[cut:cut + 4] and data.num_classes == 5
    assert data.identity["tokenizer"] == "mod5" and data.identity["train_tokens"] == 13
    with pytest.raises(ValueError, match=r"'mod5' gave token ids outside 0..3, e.g. 4"):
        text_mod.token_lm_data(lambda t: [ord(c) % 5 for c in t], vocabulary_size=4, tokenizer="mod5", context=4)
    with pytest.raises(ValueError, match="decode with it"):
        data.decode(x[0])


def test_class_subset_picks_and_orders_logits():
    class Fixed(torch.nn.Module):
        def forward(self, x):
            return torch.arange(6.0).repeat(len(x), 1)

    out = beyond.ClassSubset(Fixed(), (4, 0, 2))(torch.zeros(2, 1))
    assert out.tolist() == [[4.0, 0.0, 2.0]] * 2
    with pytest.raises(ValueError, match="class 7 asked for, but the model has 6 logits"):
        beyond.ClassSubset(Fixed(), (7,))(torch.zeros(1, 1))
    with pytest.raises(ValueError, match="distinct"):
        beyond.ClassSubset(Fixed(), (1, 1))


def tiny_hub_config(**fields):
    return dataclasses.replace(beyond.BeyondConfig.from_scale(get_scale("smoke")), vit_epochs=0, lm_epochs=0,
                               ks=(1,), **fields)


def test_pretrained_lm_from_a_local_folder_is_measured_as_saved(tmp_path):
    """The hub path offline: a tiny GPT-2 and a byte-level BPE tokenizer saved by save_pretrained are
    loaded back, the text tokenized by that tokenizer, and the intact model's perplexity in the
    comparison is the saved model's, computed here independently."""
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    bpe.train_from_iterator([python_topics_text()[:20_000]], tokenizers.trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe)
    config = transformers.GPT2Config(vocab_size=bpe.get_vocab_size(), n_positions=32, n_embd=16, n_layer=3, n_head=2,
                                    bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    saved = transformers.GPT2LMHeadModel(config).eval()
    saved.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, loaded_tok = beyond.load_hub_lm(str(tmp_path))
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in saved.state_dict().items())
    assert loaded_tok.encode("def f(x):") == tok.encode("def f(x):")
    cfg = tiny_hub_config(lm_hub=str(tmp_path), context=16, train_chars=1_100, lm_positions=64, heal_lr=1e-4)
    s = beyond.run_lm_study(get_scale("smoke"), cfg=cfg)
    assert s.model_name == f"{tmp_path} (transformers, pretrained)" and len(s.table) == 3 and s.history == []
    data = text_mod.token_lm_data(tok.encode, vocabulary_size=bpe.get_vocab_size(), tokenizer=str(tmp_path),
                                  context=16, train_tokens=1_100)
    expected = math.exp(evaluate(beyond.LMLogits(saved), data.test)[0])
    intact = s.comparison[(s.comparison["ranking"] == "none") & ~s.comparison["healed"]]
    assert intact["value"].iloc[0] == pytest.approx(expected, rel=1e-6) and s.final["perplexity"] == intact["value"].iloc[0]
    assert set(s.comparison["k"]) == {0, 1} and s.comparison["healed"].any()


def test_pretrained_vit_from_a_local_weights_file_is_measured_as_saved(tmp_path):
    """The timm hub path offline: a shrunken DeiT's weights saved to a file are loaded through timm's
    pretrained machinery (pretrained_cfg_overlay), its logits cut to the given classes; the intact
    model's test accuracy in the comparison is the saved model's, computed here independently."""
    timm = pytest.importorskip("timm")
    shrink = dict(patch_size=2, embed_dim=16, depth=2, num_heads=2)
    torch.manual_seed(0)
    saved = timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=8, in_chans=1, **shrink).eval()
    weights = tmp_path / "deit.pth"
    torch.save(saved.state_dict(), weights)
    loaded = beyond.load_hub_vit("deit_tiny_patch16_224", image_size=8, in_channels=1, weights=str(weights), **shrink)
    assert saved.state_dict().keys() == loaded.state_dict().keys()
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in saved.state_dict().items())
    classes = (5, 900, 1, 42, 7, 3, 999, 8, 0, 64)
    cfg = tiny_hub_config(vit_hub="deit_tiny_patch16_224", vit_classes=classes)
    s = beyond.run_vit_study(get_scale("smoke"), cfg=cfg, hub_weights=str(weights), hub_overrides=shrink)
    data = load_dataset("digits", seed=0, train_limit=get_scale("smoke").train_limit)
    expected = evaluate(beyond.ClassSubset(saved, classes), data.test)[1]
    intact = s.comparison[(s.comparison["ranking"] == "none") & ~s.comparison["healed"]]
    assert s.model_name == "deit_tiny_patch16_224 (timm, pretrained)" and len(s.table) == 2 and s.history == []
    assert intact["value"].iloc[0] == expected == s.final["test_acc"]
