"""Layer removal for timm and Hugging Face models (reproduce.models.adapters,
reproduce.experiments.layer_removal, reproduce.metric.similarity), on planted cases: a block whose
update is forced to zero, hand-summed parameter counts, a lesioned forward written with hooks,
hand-computed cosines. Tiny models of random initialisation; nothing is downloaded."""

import math
import sys

import pytest
import torch
from torch import nn

from reproduce.experiments import layer_removal as L
from reproduce.metric import similarity
from reproduce.models import adapters as A

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

KW = dict(lr=1e-3, batch_size=64)
VOCAB = 40


def _quiet_config(config):
    config.bos_token_id = config.eos_token_id = config.pad_token_id = 0
    return config


def vit():
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", num_classes=4, img_size=8, patch_size=2, in_chans=1, depth=4,
                             embed_dim=32, num_heads=2).eval()


def convnext():
    torch.manual_seed(0)
    return timm.create_model("convnext_atto", num_classes=4, in_chans=1, depths=(1, 2, 1, 1), dims=(8, 16, 24, 32),
                             ls_init_value=0.5).eval()


def timm_resnet():
    torch.manual_seed(0)
    # zero_init_last=False: timm zeroes each branch's last batch norm by default (every branch constant)
    return timm.create_model("resnet18", num_classes=4, in_chans=1, zero_init_last=False).eval()


def gpt2():
    torch.manual_seed(0)
    config = _quiet_config(transformers.GPT2Config(n_layer=4, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=64))
    return transformers.GPT2LMHeadModel(config).eval()


def llama():
    torch.manual_seed(0)
    config = _quiet_config(transformers.LlamaConfig(num_hidden_layers=4, hidden_size=32, intermediate_size=64,
                                                    num_attention_heads=2, num_key_value_heads=1, vocab_size=VOCAB))
    return transformers.LlamaForCausalLM(config).eval()


def bert():
    torch.manual_seed(0)
    config = _quiet_config(transformers.BertConfig(num_hidden_layers=4, hidden_size=32, intermediate_size=64,
                                                   num_attention_heads=2, vocab_size=VOCAB, num_labels=4))
    return transformers.BertForSequenceClassification(config).eval()


def hf_vit():
    torch.manual_seed(0)
    config = transformers.ViTConfig(num_hidden_layers=4, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                                    image_size=8, patch_size=2, num_channels=1, num_labels=4)
    return transformers.ViTForImageClassification(config).eval()


def images(n=24):
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, 1, 8, 8, generator=g), torch.arange(n) % 4


def tokens(b=3, t=10):
    g = torch.Generator().manual_seed(4)
    return torch.randint(1, VOCAB, (b, t), generator=g)


def zero_update(model, family, number):
    """Force block ``number``'s update of the residual stream to exactly zero (its output projections)."""
    block = A.model_blocks(model)[number].module
    with torch.no_grad():
        if family == "timm-vit":
            parts = [block.attn.proj, block.mlp.fc2]
        elif family == "timm-convnext":
            parts = [block.mlp.fc2]
        elif family == "hf-gpt2":
            parts = [block.attn.c_proj, block.mlp.c_proj]
        elif family == "hf-llama":
            parts = [block.self_attn.o_proj, block.mlp.down_proj]
        elif family == "hf-vit":  # transformers 4 and 5 name the two output projections differently
            names = ("attention.output.dense", "output.dense", "attention.o_proj", "mlp.fc2")
            parts = [m for n, m in block.named_modules() if n in names]
            assert len(parts) == 2, [n for n, _ in block.named_modules()]
        elif family == "hf-bert":
            parts = [block.attention.output.dense, block.output.dense]
        else:
            raise AssertionError(family)
        for p in parts:
            p.weight.zero_()
            if getattr(p, "bias", None) is not None:
                p.bias.zero_()
    return model


# family, builder, inputs and labels of the block table, forward for the outputs, exact equality?
CASES = {
    "timm-vit": (vit, lambda: (images()[0], images()[1]), True),
    "timm-convnext": (convnext, lambda: (torch.randn(8, 1, 32, 32, generator=torch.Generator().manual_seed(5)),
                                         torch.arange(8) % 4), True),
    "hf-gpt2": (gpt2, lambda: ({"input_ids": tokens()}, L.next_token_labels(tokens())), True),
    "hf-llama": (llama, lambda: ({"input_ids": tokens()}, L.next_token_labels(tokens())), True),
    "hf-vit": (hf_vit, lambda: ({"pixel_values": images()[0]}, images()[1]), True),
    # post-norm: with the projections zeroed the layer computes LN(LN(x)) of an already normalised
    # x, which differs from x by rounding (and LayerNorm's eps) only
    "hf-bert": (bert, lambda: ({"input_ids": tokens(8, 6)}, torch.arange(8) % 4), False),
}


def forward(model, inputs):
    with torch.no_grad():
        out = model(**inputs) if isinstance(inputs, dict) else model(inputs)
    return out.logits if hasattr(out, "logits") else out


@pytest.mark.parametrize("family", list(CASES))
def test_a_block_with_a_zero_update_is_found_and_removed_with_outputs_unchanged(family):
    build, data, exact = CASES[family]
    model = build()
    assert A.adapter_for(model).family == family
    planted = 1 if family != "timm-convnext" else 2
    zero_update(model, family, planted)
    inputs, labels = data()
    num_classes = VOCAB if labels.dim() == 2 else 4
    table = L.block_table(model, inputs, labels, num_classes=num_classes, **KW)
    row = table.set_index("block").loc[planted]
    # one bundle of every sample: conflicting, the accuracy bound that of the commonest label,
    # distance 0, and input and output equal (cosine 1)
    assert row["num_bundles"] == 1 and row["conflicting"] and row["entropy"] > 0
    # post-norm (BERT): the update is rounding, well below one resolution step
    assert row["distance"] == 0.0 if exact else row["distance"] < 0.01
    assert row["block_influence"] == pytest.approx(0.0, abs=1e-6)
    assert row["angular_distance"] == pytest.approx(0.0, abs=1e-3)
    others = table[table["block"] != planted]
    assert not others["conflicting"].any() and (others["block_influence"] > row["block_influence"]).all()
    assert L.removal_order(table, "entropy")[0] == planted
    assert L.removal_order(table, "block_influence")[0] == planted

    smaller = A.remove_model_blocks(model, [planted])
    block_params = sum(p.numel() for p in A.model_blocks(model)[planted].module.parameters())
    assert sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in smaller.parameters()) == block_params
    assert len(A.model_blocks(smaller)) == len(A.model_blocks(model)) - 1
    before, after = forward(model, inputs), forward(smaller, inputs)
    if exact:
        assert torch.equal(before, after)
    else:
        torch.testing.assert_close(after, before, rtol=0, atol=1e-5)


def _lesioned_by_hand(model, number):
    """The lesioned forward written independently of the adapters: block ``number`` returns its input."""
    block = A.model_blocks(model)[number].module

    def hook(module, args, kwargs, out):
        x = args[0] if args else kwargs["hidden_states"]
        return (x, *out[1:]) if isinstance(out, tuple) else x

    return block.register_forward_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("family", list(CASES))
def test_removal_computes_the_lesioned_forward_and_drops_exactly_the_blocks_parameters(family):
    build, data, _ = CASES[family]
    model = build()
    inputs, _ = data()
    drop = [0, 2]
    smaller = A.remove_model_blocks(model, drop)
    handles = [_lesioned_by_hand(model, i) for i in drop]
    try:
        expected = forward(model, inputs)
    finally:
        for h in handles:
            h.remove()
    torch.testing.assert_close(forward(smaller, inputs), expected, rtol=0, atol=0)
    with A.lesioned(model, drop):
        torch.testing.assert_close(forward(model, inputs), expected, rtol=0, atol=0)
    blocks = A.model_blocks(model)
    by_hand = sum(p.numel() for i in drop for p in blocks[i].module.parameters())
    assert sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in smaller.parameters()) == by_hand
    assert sum(A.removable_parameters(model)[i] for i in drop) == by_hand
    # the original is untouched
    assert len(A.model_blocks(model)) == len(blocks)


@pytest.mark.parametrize("build", [gpt2, llama])
def test_removing_a_middle_layer_keeps_generate_equal_to_the_lesioned_model(build, tmp_path):
    model = build()
    ids = tokens(2, 5)
    smaller = A.remove_model_blocks(model, [1])
    assert smaller.config.num_hidden_layers == 3
    attn = [m for m in smaller.modules() if hasattr(m, "layer_idx") and m.layer_idx is not None]
    assert sorted({m.layer_idx for m in attn}) == [0, 1, 2]
    kw = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    with A.lesioned(model, [1]):
        expected = model.generate(ids, **kw)
    got = smaller.generate(ids, **kw)
    assert torch.equal(got, expected) and got.shape[1] == ids.shape[1] + 8
    # the smaller model round-trips as a model of its own library
    smaller.save_pretrained(tmp_path)
    loaded = type(smaller).from_pretrained(tmp_path).eval()
    assert loaded.config.num_hidden_layers == 3
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in smaller.parameters())
    assert torch.equal(loaded.generate(ids, **kw), expected)


def test_timm_resnet_branch_tap_conflicts_when_its_branch_is_constant():
    model = timm_resnet()
    blocks = A.model_blocks(model)
    with torch.no_grad():  # block 3 (layer2.1, no downsample): its last batch norm outputs 0
        blocks[3].module.bn2.weight.zero_()
        blocks[3].module.bn2.bias.zero_()
    x = torch.randn(16, 1, 32, 32, generator=torch.Generator().manual_seed(6))
    y = torch.arange(16) % 4
    table = L.block_table(model, x, y, num_classes=4, **KW)
    assert list(table.loc[table["conflicting"], "block"]) == [3]
    smaller = A.remove_model_blocks(model, [3])
    assert isinstance(smaller.layer2[1], A.RemovedResNetBlock)
    # with the branch zero, the block computes act(x): the removal rule
    assert torch.equal(forward(smaller, x), forward(model, x))
    removed = sum(p.numel() for p in blocks[3].module.parameters())
    assert sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in smaller.parameters()) == removed


def test_unknown_families_and_bad_block_numbers_name_the_valid_choices():
    with pytest.raises(ValueError, match=r"no layer-removal adapter for a torch\.nn\.modules\.linear\.Linear; the "
                                         r"known families are torchvision-resnet, timm-resnet, .*hf-vit"):
        A.adapter_for(nn.Linear(2, 2))
    opt = transformers.OPTForCausalLM(_quiet_config(transformers.OPTConfig(num_hidden_layers=2, hidden_size=16,
                                                                            ffn_dim=32, num_attention_heads=2,
                                                                            vocab_size=VOCAB)))
    with pytest.raises(ValueError, match=r"model_type 'opt'; the known ones are gpt2, llama"):
        A.adapter_for(opt)
    with pytest.raises(ValueError, match=r"block indices \[4\] outside the valid range 0..3"):
        A.remove_model_blocks(gpt2(), [4])
    with pytest.raises(ValueError, match=r"removing all 4 layers"):
        A.remove_model_blocks(gpt2(), [0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"unknown ranking 'bi'; valid choices are entropy, distance, "
                                         r"block_influence, angular_distance, random"):
        L.removal_order(L.block_table(vit(), *images(), num_classes=4, **KW), "bi")
    with pytest.raises(ValueError, match=r"per-position labels \(3, 9\) do not match"):
        L.block_table(gpt2(), {"input_ids": tokens()}, L.next_token_labels(tokens())[:, 1:], num_classes=VOCAB, **KW)


def test_without_timm_asking_for_a_timm_model_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'reproduce\[models\]'"):
        A.require("timm")
    # the rest keeps working: a torchvision ResNet's adapter needs neither library
    import torchvision
    assert A.adapter_for(torchvision.models.resnet18(num_classes=2)).family == "torchvision-resnet"


def test_next_token_labels_by_hand():
    ids = torch.tensor([[5, 6, 7], [8, 9, 1]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert L.next_token_labels(ids).tolist() == [[6, 7, L.IGNORE], [9, 1, L.IGNORE]]
    assert L.next_token_labels(ids, mask).tolist() == [[6, 7, L.IGNORE], [9, L.IGNORE, L.IGNORE]]


def test_similarity_scores_by_hand():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    y = torch.tensor([[0.0, 1.0], [1.0, 1.0], [4.0, 0.0]])  # cosines 0, 1/sqrt(2), 1
    mean_cos = (0 + 1 / math.sqrt(2) + 1) / 3
    assert similarity.block_influence(x, y) == pytest.approx(1 - mean_cos, abs=1e-12)
    assert similarity.angular_distance(x, y) == pytest.approx((0.5 + 0.25 + 0.0) / 3, abs=1e-12)
    with pytest.raises(ValueError, match=r"one shape"):
        similarity.block_influence(x, y[:2])


def test_removal_order_of_a_hand_made_table():
    import pandas as pd

    table = pd.DataFrame({"block": [0, 1, 2, 3], "entropy": [0.0, 0.7, 0.7, 0.2], "distance": [3.0, 0.0, 0.0, 0.5],
                          "block_influence": [0.3, 0.1, 0.2, 0.05], "angular_distance": [0.2, 0.3, 0.1, 0.4]})
    for c in L.TABLE_COLUMNS:
        if c not in table:
            table[c] = 0
    assert L.removal_order(table, "entropy") == [1, 2, 3, 0]
    assert L.removal_order(table, "distance") == [1, 2, 3, 0]
    assert L.removal_order(table, "block_influence") == [3, 1, 2, 0]
    assert L.removal_order(table, "angular_distance") == [2, 0, 1, 3]
    assert sorted(L.removal_order(table, "random", seed=1)) == [0, 1, 2, 3]
    assert L.removal_order(table, "random", seed=1) == L.removal_order(table, "random", seed=1)
