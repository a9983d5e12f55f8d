"""Conflicting-layer removal for torchvision ResNets (reproduce.experiments.prune), on planted structure:
a branch forced to a constant, hand-written branch and lesioned forwards, hand-summed parameters."""

import math
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.data import TensorDataset
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from reproduce.experiments import prune
from reproduce.models.nets import ConvNet, ModelConfig
from reproduce.config.scales import get_scale
from reproduce.models.torchvision import TorchvisionResNet
from reproduce.training.loop import TrainConfig, fit, load_run, make_optimizer, train

KW = dict(num_classes=10, lr=1e-3, batch_size=64)


def randomise_norms(model: nn.Module, seed: int = 1) -> nn.Module:
    """Give every batch norm non-trivial affine parameters and running statistics (so that eval
    mode is not close to the identity) and return the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
    return model.eval()


def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return randomise_norms(torchvision.models.resnet18(num_classes=10))


def bottleneck_net() -> nn.Module:
    """Bottleneck blocks: layer1.0 (downsampling: 64 -> 256 channels), layer1.1 (identity), one per later stage."""
    torch.manual_seed(0)
    return randomise_norms(ResNet(Bottleneck, [2, 1, 1, 1], num_classes=10))


NETS = {"resnet18": resnet18, "bottleneck": bottleneck_net}


def batch(n: int = 16, size: int = 16, classes: int = 4):
    g = torch.Generator().manual_seed(7)
    return torch.randn(n, 3, size, size, generator=g), torch.arange(n) % classes


def block_module(model: nn.Module, name: str) -> nn.Module:
    stage, index = name.split(".")
    return getattr(model, stage)[int(index)]


def block_input(model: nn.Module, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    kept = []
    handle = block.register_forward_hook(lambda m, args, out: kept.append(args[0].detach().clone()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return kept[0]


def bn_by_hand(bn: nn.BatchNorm2d, z: torch.Tensor) -> torch.Tensor:
    shape = (1, -1, 1, 1)
    return ((z - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps)
            * bn.weight.view(shape) + bn.bias.view(shape))


def scale_by_hand(z: torch.Tensor) -> torch.Tensor:
    z = z.double()
    return 1.0 / torch.sqrt(((z - z.mean()) ** 2).mean() + 1e-6)


# --------------------------------------------------------------------------- the branch tap


@pytest.mark.parametrize("net, name", [("resnet18", "layer1.1"), ("resnet18", "layer2.0"),
                                       ("bottleneck", "layer1.1"), ("bottleneck", "layer3.0")])
def test_hooked_branch_tap_equals_a_handwritten_recomputation(net, name):
    model = NETS[net]()
    x, _ = batch()
    blocks = {b.name: b.block for b in prune.resnet_blocks(model)}
    block = block_module(model, name)
    inp = block_input(model, block, x)
    with torch.no_grad():
        convs = [block.conv1, block.conv2] + ([block.conv3] if isinstance(block, Bottleneck) else [])
        bns = [block.bn1, block.bn2] + ([block.bn3] if isinstance(block, Bottleneck) else [])
        a, scale = inp, torch.tensor(1.0, dtype=torch.float64)
        for k, (conv, bn) in enumerate(zip(convs, bns)):
            z = conv(a)
            scale = scale * scale_by_hand(z)
            a = bn_by_hand(bn, z)
            if k < len(convs) - 1:
                a = torch.clamp(a, min=0)
        expected = (a.double() * scale).float()
    got = prune.branch_activations(model, x, [blocks[name]])
    assert list(got) == [blocks[name]]
    assert got[blocks[name]].shape == expected.shape
    torch.testing.assert_close(got[blocks[name]], expected, rtol=1e-5, atol=1e-6)
    # the scaling is really applied (the unscaled branch is far from it here)
    assert not torch.allclose(a, expected, rtol=1e-2)


@pytest.mark.parametrize("net, name", [("resnet18", "layer2.0"), ("bottleneck", "layer3.0")])
def test_the_branch_tap_multiplies_in_the_released_order_bit_for_bit(net, name):
    """As the package's own residual net (``ModelConfig.branch_tap="released"``): in float32, the
    last convolution's scale first, ``((z * s_k) * ...) * s_1``, each ``s = 1 / sqrt(var + 1e-6)``
    by a division (not ``rsqrt``), the order of the released code."""
    model = NETS[net]()
    x, _ = batch()
    blocks = {b.name: b.block for b in prune.resnet_blocks(model)}
    block = block_module(model, name)
    seen = {}
    convs = [block.conv1, block.conv2] + ([block.conv3] if isinstance(block, Bottleneck) else [])
    last_bn = block.bn3 if isinstance(block, Bottleneck) else block.bn2
    handles = [c.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(i, out.detach().clone()))
               for i, c in enumerate(convs)]
    handles.append(last_bn.register_forward_hook(lambda m, a, out: seen.__setitem__("bn", out.detach().clone())))
    got = prune.branch_activations(model, x, [blocks[name]])[blocks[name]]
    for h in handles:
        h.remove()
    expected = seen["bn"]
    for i in reversed(range(len(convs))):
        expected = expected * (1.0 / torch.sqrt(seen[i].var(unbiased=False) + 1e-6))
    assert torch.equal(got, expected)


# --------------------------------------------------------------------------- conflicting blocks


def plant_constant_branch(model: nn.Module, name: str, value: float = 0.3) -> None:
    """The block's last batch norm outputs ``value`` for every sample: its branch is one point."""
    block = block_module(model, name)
    bn = block.bn3 if isinstance(block, Bottleneck) else block.bn2
    with torch.no_grad():
        bn.weight.zero_()
        bn.bias.fill_(value)


@pytest.mark.parametrize("net, name, number", [("resnet18", "layer1.1", 1), ("resnet18", "layer3.0", 4),
                                               ("bottleneck", "layer1.1", 1), ("bottleneck", "layer2.0", 2)])
def test_a_planted_constant_branch_is_the_only_conflicting_block(net, name, number):
    model = NETS[net]()
    plant_constant_branch(model, name)
    x, y = batch(classes=4)  # 16 samples, 4 labels of 4 samples each
    table = prune.block_table(model, x, y, **KW)
    assert prune.conflicting_blocks(table) == [number]
    row = table.set_index("block").loc[number]
    assert row["name"] == name
    # one bundle of all 16 samples, 4 labels equally often: H = ln 4, bound = 1/4, distance 0
    assert row["num_bundles"] == 1
    assert row["entropy"] == pytest.approx(math.log(4), abs=1e-12)
    assert row["max_accuracy"] == pytest.approx(0.25)
    assert row["distance"] == 0.0
    others = table[table["block"] != number]
    assert (others["num_bundles"] == 16).all() and (others["entropy"] == 0).all()
    assert list(table["block"]) == list(range(len(table)))
    assert list(table.columns) == list(prune.TABLE_COLUMNS)


def test_a_constant_branch_needs_two_labels_to_conflict():
    model = resnet18()
    plant_constant_branch(model, "layer1.1")
    x, _ = batch()
    table = prune.block_table(model, x, torch.zeros(16, dtype=torch.int64), **KW)
    assert table.set_index("block").loc[1, "num_bundles"] == 1
    assert prune.conflicting_blocks(table) == []


def test_zero_init_residual_makes_every_branch_conflicting():
    """torchvision's zero_init_residual zeroes every last batch-norm scale (and the shifts start at
    0): every branch is the zero map, one bundle, so with 4 labels every block conflicts."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10, zero_init_residual=True)
    x, y = batch()
    table = prune.block_table(model, x, y, **KW, distance=False)
    assert prune.conflicting_blocks(table) == list(range(8))
    assert table["distance"].isna().all()


def test_table_kinds_downsampling_and_parameters():
    table = prune.block_table(bottleneck_net(), *batch(), **KW, distance=False)
    assert list(table["name"]) == ["layer1.0", "layer1.1", "layer2.0", "layer3.0", "layer4.0"]
    assert list(table["stage"]) == ["layer1", "layer1", "layer2", "layer3", "layer4"]
    assert list(table["index"]) == [0, 1, 0, 0, 0]
    assert set(table["kind"]) == {"Bottleneck"}
    assert list(table["has_downsample"]) == [True, False, True, True, True]
    # layer1.1: 1x1 256->64, 3x3 64->64, 1x1 64->256, three batch norms (no conv bias in torchvision)
    identity = 256 * 64 + 2 * 64 + 64 * 64 * 9 + 2 * 64 + 64 * 256 + 2 * 256
    assert table.loc[1, "parameters"] == table.loc[1, "branch_parameters"] == identity
    # layer1.0 also holds its projection 1x1 64->256 and its batch norm
    assert table.loc[0, "parameters"] - table.loc[0, "branch_parameters"] == 64 * 256 + 2 * 256


def test_conflicting_blocks_reads_entropy_above_zero():
    table = pd.DataFrame({"block": [0, 1, 2, 3], "entropy": [0.0, 0.5, 0.0, 1e-300]})
    assert prune.conflicting_blocks(table) == [1, 3]
    with pytest.raises(ValueError, match="missing \\['entropy'\\]"):
        prune.conflicting_blocks(pd.DataFrame({"block": [0]}))


# --------------------------------------------------------------------------- removal


def lesioned_output(model: nn.Module, names: list[str], x: torch.Tensor) -> torch.Tensor:
    """The full model's output with each named block's output replaced by relu(shortcut(input))."""
    def replace(block):
        def hook(module, args, out):
            inp = args[0]
            shortcut = inp if block.downsample is None else block.downsample(inp)
            return torch.clamp(shortcut, min=0)
        return hook

    handles = [block_module(model, n).register_forward_hook(replace(block_module(model, n))) for n in names]
    try:
        with torch.no_grad():
            return model(x)
    finally:
        for h in handles:
            h.remove()


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("net, names, numbers, expected_drop", [
    # resnet18 layer1.1: 3x3 64->64 twice, two batch norms
    ("resnet18", ["layer1.1"], [1], 2 * 64 * 64 * 9 + 4 * 64),
    # resnet18 layer2.0 (downsampling: its 1x1 projection stays): 3x3 64->128, 3x3 128->128, two batch norms
    ("resnet18", ["layer2.0"], [2], 64 * 128 * 9 + 128 * 128 * 9 + 4 * 128),
    ("resnet18", ["layer1.1", "layer4.1"], [1, 7], (2 * 64 * 64 * 9 + 4 * 64) + (2 * 512 * 512 * 9 + 4 * 512)),
    # bottleneck layer1.1: 1x1 256->64, 3x3 64->64, 1x1 64->256, batch norms of 64, 64, 256
    ("bottleneck", ["layer1.1"], [1], 256 * 64 + 64 * 64 * 9 + 64 * 256 + 2 * (64 + 64 + 256)),
    # bottleneck layer2.0 (downsampling, width 128, 256 -> 512 channels)
    ("bottleneck", ["layer2.0"], [2], 256 * 128 + 128 * 128 * 9 + 128 * 512 + 2 * (128 + 128 + 512)),
])
def test_removal_is_a_smaller_net_computing_the_lesioned_forward(net, names, numbers, expected_drop):
    model = NETS[net]()
    x, _ = batch()
    with torch.no_grad():
        full_before = model(x)
    smaller = prune.remove_blocks(model, numbers)
    assert count(model) - count(smaller) == expected_drop
    assert len(list(smaller.modules())) < len(list(model.modules()))
    with torch.no_grad():
        got = smaller.eval()(x)
    expected = lesioned_output(model, names, x)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(got, full_before, atol=1e-3)  # the removal changes the output
    # the original is untouched, and what the copy keeps is the original's weights under the same names
    for name in names:
        assert isinstance(block_module(model, name), (BasicBlock, Bottleneck))
        assert isinstance(block_module(smaller, name), prune.RemovedResNetBlock)
    with torch.no_grad():
        torch.testing.assert_close(model(x), full_before, rtol=0, atol=0)
    big, small = model.state_dict(), smaller.state_dict()
    assert set(small) < set(big)
    assert all(torch.equal(small[k], big[k]) for k in small)
    # table of the smaller net: the removed blocks are gone, the others keep their numbers
    table = prune.block_table(smaller, x, batch()[1], **KW, distance=False)
    assert set(table["block"]) == set(range(len(prune.resnet_blocks(model)))) - set(numbers)


def test_removing_a_removed_block_again_changes_nothing():
    model = resnet18()
    once = prune.remove_blocks(model, [3])
    twice = prune.remove_blocks(once, [3, 5])
    assert count(once) - count(twice) == 2 * 256 * 256 * 9 + 4 * 256  # only layer3.1 went
    assert isinstance(block_module(twice, "layer2.1"), prune.RemovedResNetBlock)


def test_keep_downsampling_refuses_in_remove_blocks_and_skips_in_prune_conflicting():
    model = resnet18()
    with pytest.raises(ValueError, match=r"blocks \[2, 6\] \(layer2.0, layer4.0\) downsample.*keep_downsampling"):
        prune.remove_blocks(model, [1, 2, 6], keep_downsampling=True)
    kept = prune.remove_blocks(model, [1], keep_downsampling=True)
    assert isinstance(block_module(kept, "layer1.1"), prune.RemovedResNetBlock)
    plant_constant_branch(model, "layer1.1")
    plant_constant_branch(model, "layer3.0")  # a downsampling block
    x, y = batch()
    smaller, table = prune.prune_conflicting(model, x, y, **KW, keep_downsampling=True)
    assert prune.conflicting_blocks(table) == [1, 4]
    assert list(table.loc[table["removed"], "block"]) == [1]
    assert isinstance(block_module(smaller, "layer3.0"), BasicBlock)
    smaller, table = prune.prune_conflicting(model, x, y, **KW)
    assert list(table.loc[table["removed"], "block"]) == [1, 4]
    assert isinstance(block_module(smaller, "layer3.0"), prune.RemovedResNetBlock)
    assert block_module(smaller, "layer3.0").downsample is not None


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", [nn.Linear(3, 2), ConvNet(ModelConfig("residual", 10, 3, 16, (1, 1, 1, 1))),
                                 torchvision.models.mobilenet_v2(num_classes=10)])
def test_a_model_that_is_not_a_torchvision_resnet_is_refused_naming_what_is_supported(bad):
    x, y = batch()
    for call in (lambda: prune.block_table(bad, x, y, **KW), lambda: prune.remove_blocks(bad, [0]),
                 lambda: prune.prune_conflicting(bad, x, y, **KW)):
        with pytest.raises(ValueError, match=r"expected a torchvision\.models\.ResNet .*BasicBlock.*Bottleneck"
                                             r".*resnet18.*; got .*" + type(bad).__name__):
            call()


def test_a_resnet_with_a_foreign_block_is_refused_naming_the_block():
    model = torchvision.models.resnet18(num_classes=10)
    model.layer2[1] = nn.Identity()
    with pytest.raises(ValueError, match=r"block layer2.1 is a Identity; expected a torchvision\.models\.ResNet"):
        prune.resnet_blocks(model)


@pytest.mark.parametrize("blocks, message", [
    ([8], r"block indices \[8\] outside the valid range 0..7 \(this model has 8 residual blocks"),
    ([-1, 3], r"block indices \[-1\] outside the valid range 0..7"),
    ([True], r"block numbers must be ints in 0..7, got \[True\]"),
    ([1.0], r"block numbers must be ints in 0..7, got \[1.0\]"),
    ("layer1.0", r"blocks must be a collection of block numbers \(ints in 0..7\), got 'layer1.0'"),
    (3, r"blocks must be a collection of block numbers \(ints in 0..7\), got 3"),
])
def test_bad_block_numbers_name_the_valid_range(blocks, message):
    model = torchvision.models.resnet18(num_classes=10)
    with pytest.raises(ValueError, match=message):
        prune.remove_blocks(model, blocks)
    with pytest.raises(ValueError, match=message):
        prune.branch_activations(model, batch()[0], blocks)


def test_bad_batches_are_refused():
    model = torchvision.models.resnet18(num_classes=10)
    x, y = batch()
    with pytest.raises(ValueError, match=r"x holds N = 16 samples but y holds 15"):
        prune.block_table(model, x, y[:15], **KW)
    with pytest.raises(ValueError, match=r"x must be an image batch tensor \[N, C, H, W\], got \(16, 768\)"):
        prune.block_table(model, x.flatten(1), y, **KW)
    with pytest.raises(ValueError, match=r"label 10 outside the valid range 0..9"):
        prune.block_table(model, x, y + 7, **KW)
    with pytest.raises(ValueError, match=r"blocks \[1\] are removed"):
        prune.branch_activations(prune.remove_blocks(model, [1]), x, [1])


# --------------------------------------------------------------------------- models and training


def test_small_image_stem_and_seeded_initialisation():
    state = torch.random.get_rng_state()
    a = prune.torchvision_resnet("resnet18", num_classes=10, in_channels=1, image_size=8, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    b = prune.torchvision_resnet("resnet18", num_classes=10, in_channels=1, image_size=8, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert (a.conv1.in_channels, a.conv1.kernel_size, a.conv1.stride) == (1, (3, 3), (1, 1))
    assert isinstance(a.maxpool, nn.Identity)
    feats = []
    a.layer4.register_forward_hook(lambda m, args, out: feats.append(out.shape))
    assert a.eval()(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert feats == [(2, 512, 1, 1)]  # 8x8 halved by layer2..layer4
    big = prune.torchvision_resnet("resnet50", num_classes=10, in_channels=1, image_size=128)
    assert (big.conv1.in_channels, big.conv1.kernel_size, big.conv1.stride) == (1, (7, 7), (2, 2))
    assert isinstance(big.maxpool, nn.MaxPool2d)
    with pytest.raises(ValueError, match=r"unknown arch 'vgg11'; valid choices are resnet18, resnet34"):
        prune.torchvision_resnet("vgg11", num_classes=10, in_channels=1, image_size=8)


def tiny_data(n: int = 64) -> SimpleNamespace:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.randn(n, 1, 8, 8, generator=g) + 2.0 * y.view(-1, 1, 1, 1).float()
    ds = TensorDataset(x, y)
    return SimpleNamespace(train=ds, train_eval=ds, test=ds, num_classes=2, in_channels=1, image_size=8)


def _reference_loop(model, data, *, epochs, batch_size, lr, seed):
    """The study's training as it was written before it moved into the package's loop (round 2's
    ``prune.train_torchvision``), by hand: the epoch seed ``(seed * 1_000_003 + epoch * 7_919 +
    4_242) mod (2**63 - 1)`` seeds the shuffle generator and the global RNG, a DataLoader draws
    the order, RAdam + Lookahead steps."""
    from torch.utils.data import DataLoader

    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    opt = make_optimizer(model, cfg)
    for epoch in range(1, epochs + 1):
        s = (seed * 1_000_003 + epoch * 7_919 + 4_242) % (2**63 - 1)
        gen = torch.Generator().manual_seed(s)
        torch.manual_seed(s)
        model.train()
        for xb, yb in DataLoader(data.train, batch_size=batch_size, shuffle=True, generator=gen, drop_last=True):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    return model


def _small_resnet():
    torch.manual_seed(0)
    model = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=2)
    model.conv1 = nn.Conv2d(1, 64, 3, 1, 1, bias=False)
    return model


def test_the_study_trains_through_the_package_loop_exactly_as_before():
    """fit with the study's seeding (stream ``torchvision-epoch``, DataLoader order) gives the
    weights of the hand-written loop, bit for bit; the package's default seeding gives others."""
    data = tiny_data()
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-3, seed=5, eval_train=False, measure_start=False)
    reference = _reference_loop(_small_resnet(), data, epochs=2, batch_size=16, lr=1e-3, seed=5)
    ours = _small_resnet()
    run = fit(ours, data, cfg, device="cpu", progress=False, seeding=prune.SEEDING)
    assert run.status == "finished" and [r["epoch"] for r in run.history] == [1, 2]
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), ours.state_dict().values()))
    other = _small_resnet()
    fit(other, data, cfg, device="cpu", progress=False)
    assert not all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), other.state_dict().values()))


def test_fit_of_a_torchvision_net_is_seeded_and_learns_a_separable_task():
    data = tiny_data()
    cfg = prune.prune_train_config(get_scale("smoke").replace(batch_size=16), 3, seed=5)

    def trained():
        model = _small_resnet()
        return model, fit(model, data, cfg, device="cpu", progress=False, seeding=prune.SEEDING).history

    (m1, h1), (m2, h2) = trained(), trained()
    assert [r["epoch"] for r in h1] == [1, 2, 3]
    drop = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert drop(h1) == drop(h2) and all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))
    assert h1[-1]["test_acc"] >= 0.9  # two classes 2 standard deviations apart
    with pytest.raises(ValueError, match=r"fewer than one batch of 128"):
        fit(m1, data, TrainConfig(epochs=1, batch_size=128), device="cpu", progress=False)


def test_a_torchvision_net_gets_a_run_folder_that_resumes(tmp_path):
    """train() of a TorchvisionResNet config: checkpoints, resume, the finished run reused."""
    data = tiny_data(32)
    config = TorchvisionResNet("resnet18", 2, 1, 8, init_seed=3)
    cfg = TrainConfig(epochs=2, batch_size=16, seed=1, eval_train=False)
    whole = train(config, data, cfg, tmp_path / "whole", device="cpu", progress=False, seeding=prune.SEEDING)
    part = train(config, data, cfg, tmp_path / "cut", device="cpu", progress=False, seeding=prune.SEEDING,
                 stop_after=1)
    assert part.status == "running" and part.epochs_done == 1
    resumed = train(config, data, cfg, tmp_path / "cut", device="cpu", progress=False, seeding=prune.SEEDING)
    assert resumed.resumed_from == 1 and resumed.status == "finished"
    assert all(torch.equal(a, b) for a, b in zip(whole.model.state_dict().values(),
                                                 resumed.model.state_dict().values()))
    loaded = load_run(tmp_path / "whole")
    assert loaded.model_config == config and isinstance(loaded.model, ResNet)
    with pytest.raises(ValueError, match="different configuration"):
        train(TorchvisionResNet("resnet18", 2, 1, 8, init_seed=4), data, cfg, tmp_path / "whole", device="cpu",
              progress=False)


def test_study_defaults_follow_the_presets():
    from reproduce.config.scales import get_scale
    smoke, cpu, paper = get_scale("smoke"), get_scale("cpu"), get_scale("paper")
    assert [prune.default_finetune_epochs(s) for s in (smoke, cpu, paper)] == [1, 3, 12]  # epochs 2, 30, 120
    assert prune.default_archs(cpu) == ("resnet18",) and prune.default_archs(paper) == ("resnet18", "resnet50")
    assert prune.study_dataset(cpu) == "digits" and prune.study_dataset(paper) == "cifar10"


def _study(seed, selection, full, pruned):
    comparison = pd.DataFrame({"net": ["full", f"without {selection}", "full + fine-tune",
                                       f"without {selection} + fine-tune"],
                               "test_acc": [full, 0.3, full, pruned]})
    return prune.PruneStudy("resnet18", "digits", seed, pd.DataFrame(), selection, (1,), comparison)


def test_claims_rule_on_hand_made_studies():
    """Removal may cost at most 0.01 test accuracy after the fine-tune; a seed without conflicting
    blocks cannot test the paper's row, a seed with them cannot test the addition's."""
    ok = [_study(0, "conflicting", 0.95, 0.945), _study(1, "conflicting", 0.95, 0.96)]
    paper, addition = prune.prune_claims(ok)
    assert paper.verdict == "holds" and addition.verdict == "not testable" and paper.seeds == 2
    assert "0: +0.005" in paper.measured and "1: -0.010" in paper.measured
    paper, _ = prune.prune_claims([_study(0, "conflicting", 0.95, 0.93), _study(1, "conflicting", 0.95, 0.95)])
    assert paper.verdict == "does not hold"
    paper, addition = prune.prune_claims([_study(0, "closest", 0.95, 0.95), _study(1, "conflicting", 0.95, 0.95)])
    assert paper.verdict == "not testable" and addition.verdict == "not testable"
    paper, addition = prune.prune_claims([_study(0, "closest", 0.95, 0.90)] * 1)
    assert paper.verdict == "not testable" and addition.verdict == "does not hold"
