"""Tests of reproduce.data.device_data (datasets on a device, batched augmentation), of the training
loop's opt-in fast path (TrainConfig.device_data / compile / precision), and of measure_model's
grouping path on planted structure, all on the CPU; the CUDA ones run where CUDA exists.

The batched pipeline is checked against the per-sample pipeline of reproduce.data: exactly (or to
1e-6) for the same image and the same draws, and in distribution for the draws themselves (the
per-sample pipeline's draws are recovered from its outputs). Data files are written here in the
formats torchvision reads; nothing is downloaded.
"""

from __future__ import annotations

import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torch import nn
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

import reproduce.metric.bundles as B
import reproduce.data.datasets as D
from reproduce.data.datasets import PerImageStandardize, ResizeWithPad, load_dataset
from reproduce.data.device_data import (
    BatchPipeline,
    DeviceSplit,
    apply_augmentation,
    augment_batch,
    device_bundle,
    draw_augmentation,
    raw_images,
    resize_with_pad_batch,
    standardize_batch,
)
from reproduce.models.nets import ModelConfig, blocks_for_depth, build_model
from reproduce.training.loop import TrainConfig, make_optimizer, train

CUDA = torch.cuda.is_available()


# ------------------------------------------------------------------------------------------------
# tiny datasets in the on-disk formats torchvision reads


def write_cifar(root: Path, n_per_batch: int = 4, n_test: int = 6, seed: int = 0) -> None:
    """cifar-10-batches-py: pickled dicts with 'data' [n, 3072] uint8 (R, G, B planes) and 'labels'."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, n in [(f"data_batch_{b}", n_per_batch) for b in range(1, 6)] + [("test_batch", n_test)]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "labels": rng.integers(0, 10, n).tolist()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)


def write_mnist(root: Path, seed: int = 0, folder: str = "MNIST") -> None:
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 8), ("t10k", 5)):
        for kind, array in (("images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
                            ("labels-idx1-ubyte", rng.integers(0, 10, n).astype(np.uint8))):
            header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
            (raw / f"{prefix}-{kind}").write_bytes(header + array.tobytes())


def write_svhn(root: Path, seed: int = 0) -> None:
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    folder = root / "SVHN"
    folder.mkdir(parents=True)
    for split, labels in (("train", [10, 1, 2, 9, 10, 4]), ("test", [3, 10, 7])):
        x = rng.integers(0, 256, size=(32, 32, 3, len(labels)), dtype=np.uint8)
        savemat(folder / f"{split}_32x32.mat", {"X": x, "y": np.array(labels, dtype=np.uint8).reshape(-1, 1)})


def write_imagenette(root: Path, seed: int = 0) -> None:
    """Photos of two sizes (so no uniform raw tensor exists), one per class and split."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for k, wnid in enumerate(sorted(D.Imagenette._WNID_TO_CLASS)):
            folder = root / "imagenette2-160" / split / wnid
            folder.mkdir(parents=True)
            h, w = (30, 40) if k % 2 else (44, 33)
            Image.fromarray(rng.integers(40, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{k}.JPEG", quality=95)


def write_fashion_mnist(root: Path, seed: int = 0) -> None:
    write_mnist(root, seed + 1, folder="FashionMNIST")  # the same idx format, its own folder


WRITERS = {"cifar10": write_cifar, "mnist": write_mnist, "fashion-mnist": write_fashion_mnist, "svhn": write_svhn}


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for name, write in {**WRITERS, "imagenette": write_imagenette}.items():
        out[name] = tmp_path_factory.mktemp(name)
        write(out[name])
    return out


def load(name: str, roots: dict[str, Path], **kw):
    return load_dataset(name, root=roots[name], verify_checksums=False, **kw)


def items(view, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    n = len(view) if n is None else n
    got = [view[i] for i in range(n)]
    return torch.stack([x for x, _ in got]), torch.tensor([y for _, y in got])


def per_sample(image: torch.Tensor, p: BatchPipeline, top: int, left: int, flip: bool, delta: float) -> torch.Tensor:
    """The per-sample steps of reproduce.data, composed by hand for fixed draws (uint8 [C, H, W] in)."""
    x = ResizeWithPad(p.size + p.grow)(v2.ToDtype(torch.float32, scale=True)(image))
    x = TF.crop(x, top, left, p.size, p.size)
    if flip:
        x = TF.horizontal_flip(x)
    if p.standardize:
        x = PerImageStandardize()(x)
    return x + torch.tensor(delta, dtype=torch.float32)


# ------------------------------------------------------------------------------------------------
# raw pixels and unaugmented views


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_raw_images_are_the_pixels_torchvision_serves(name, roots):
    data = load(name, roots)
    for base in (data.train.base, data.test.base):
        images, labels = raw_images(base)
        assert images.dtype == torch.uint8 and images.shape[1:] == (data.in_channels, data.image_size, data.image_size)
        for i in range(len(base)):
            image, label = base[i]
            assert torch.equal(images[i], v2.ToImage()(image).as_subclass(torch.Tensor)) and labels[i] == label


@pytest.mark.parametrize("name", sorted(WRITERS) + ["imagenette", "digits"])
@pytest.mark.parametrize("flat", [False, True])
def test_unaugmented_views_equal_the_per_sample_pipeline(name, flat, roots):
    data = load_dataset("digits", flat=flat, train_limit=50) if name == "digits" else load(name, roots, flat=flat)
    dev = device_bundle(data, "cpu")
    assert dev.identity == data.identity and (dev.num_classes, dev.image_size) == (data.num_classes, data.image_size)
    for view, split in ((data.train_eval, dev.train_eval), (data.test, dev.test)):
        assert isinstance(split, DeviceSplit) and len(split) == len(view)
        expected_x, expected_y = items(view) if name != "digits" else view.tensors
        x, y = split.batch(torch.arange(len(split)))
        assert x.dtype == torch.float32 and x.shape == expected_x.shape
        assert torch.equal(y, expected_y.to(torch.int64))
        torch.testing.assert_close(x, expected_x, atol=1e-6, rtol=0)  # standardisation: summation order only


def test_train_limit_and_shared_pixels(roots):
    data = load("cifar10", roots, train_limit=12, seed=3)
    dev = device_bundle(data, "cpu")
    assert dev.train.images is dev.train_eval.images and len(dev.train) == 12
    expected_x, expected_y = items(data.train_eval)
    x, y = dev.train_eval.batch(torch.arange(12))
    assert torch.equal(y, expected_y)
    torch.testing.assert_close(x, expected_x, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------------
# the augmentation, for fixed draws


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_fixed_draws_give_the_per_sample_result(name, roots):
    data = load(name, roots)
    split = device_bundle(data, "cpu").train
    p = split.pipeline
    assert p == BatchPipeline.for_dataset(name) and p.augment and p.grow > 0
    n = len(split)
    g = torch.Generator().manual_seed(1)
    draws = draw_augmentation(n, p, g)
    if p.flip:  # cover both flips and the extreme offsets
        draws.flip[:2] = torch.tensor([True, False])
    draws.top[0], draws.left[0], draws.top[1], draws.left[1] = 0, p.grow, p.grow, 0
    got = apply_augmentation(split.images, p, draws)
    for i in range(n):
        want = per_sample(split.images[i], p, int(draws.top[i]), int(draws.left[i]), bool(draws.flip[i]),
                          float(draws.delta[i]))
        torch.testing.assert_close(got[i], want, atol=1e-6, rtol=0)


def test_resize_with_pad_batch_is_resize_with_pad_per_image():
    g = torch.Generator().manual_seed(0)
    for shape, size in (((5, 3, 32, 32), 38), ((4, 1, 28, 28), 32), ((3, 3, 30, 40), 138), ((2, 3, 44, 33), 128),
                        ((2, 3, 50, 20), 16), ((2, 3, 8, 8), 8)):
        x = torch.rand(shape, generator=g)
        got = resize_with_pad_batch(x, size)
        for i in range(len(x)):
            torch.testing.assert_close(got[i], ResizeWithPad(size)(x[i]), atol=1e-6, rtol=0)


def test_standardize_batch_is_per_image_standardize():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 5, 7, generator=g) * 3 - 1
    x[2] = 0.25  # a uniform image: the floor 1 / sqrt(numel) keeps it finite
    got = standardize_batch(x)
    for i in range(len(x)):
        torch.testing.assert_close(got[i], PerImageStandardize()(x[i]), atol=1e-6, rtol=0)
    assert torch.equal(got[2], torch.zeros_like(got[2]))


def test_pipeline_is_read_from_the_views_transform():
    for name in ("mnist", "cifar10", "svhn", "imagenette"):
        for augment in (True, False):
            for flat in (True, False):
                transform = D._build_transform(D._SPECS[name], augment=augment, flat=flat)
                pipeline, prefix = BatchPipeline.of_transform(transform)
                assert prefix == 4 and pipeline == BatchPipeline.for_dataset(name, augment=augment, flat=flat)
    unknown = v2.Compose([*D._build_transform(D._SPECS["cifar10"], augment=True, flat=False).transforms,
                          v2.RandomVerticalFlip()])
    with pytest.raises(ValueError, match="cannot reproduce step 9"):
        BatchPipeline.of_transform(unknown)
    with pytest.raises(ValueError, match="unknown dataset"):
        BatchPipeline.for_dataset("cifar100")


# ------------------------------------------------------------------------------------------------
# the augmentation, in distribution


def recover_draws(out: torch.Tensor, image: torch.Tensor, p: BatchPipeline) -> tuple[int, int, bool, float]:
    """The (top, left, flip, delta) under which the batched op gives ``out`` for ``image``: the one
    candidate whose output differs from ``out`` by a constant."""
    cands = [(t, l, f) for t in range(p.grow + 1) for l in range(p.grow + 1) for f in ((False, True) if p.flip else (False,))]
    top, left, flip = (torch.tensor(c) for c in zip(*cands))
    zero = torch.zeros(len(cands))
    from reproduce.data.device_data import _Draws

    if image.dtype == torch.uint8:  # resize once: apply_augmentation leaves an image of the grown size as it is
        image = resize_with_pad_batch(image[None].to(torch.float32).mul_(1.0 / 255), p.input_size)[0]
    base = apply_augmentation(image.expand(len(cands), *image.shape), p, _Draws(top, left, flip, zero))
    diff = (out - base).flatten(1)
    delta = diff.mean(1)
    spread = (diff - delta[:, None]).abs().amax(1)
    hits = torch.nonzero(spread < 1e-5).flatten().tolist()
    assert len(hits) == 1, (hits, spread.min())
    (i,) = hits
    return cands[i][0], cands[i][1], cands[i][2], float(delta[i])


def chi2_uniform(values: list[int], k: int) -> float:
    counts = np.bincount(values, minlength=k)
    return stats.chisquare(counts).pvalue


def test_per_sample_pipeline_draws_match_the_batched_draws(roots):
    """The per-sample pipeline's outputs are exactly batched outputs for some draws, and those draws
    have the distribution draw_augmentation gives: uniform offsets, fair flips, uniform deltas."""
    data = load("cifar10", roots)
    p = BatchPipeline.for_dataset("cifar10")
    images, _ = raw_images(data.train.base)
    torch.manual_seed(0)
    recovered = [recover_draws(data.train[i % 4][0], images[i % 4], p) for i in range(120)]
    tops, lefts, flips, deltas = (list(v) for v in zip(*recovered))
    batched = draw_augmentation(120, p, torch.Generator().manual_seed(0))
    for mine, theirs in ((tops, batched.top.tolist()), (lefts, batched.left.tolist())):
        assert set(mine) <= set(range(p.grow + 1)) and chi2_uniform(mine, p.grow + 1) > 1e-3
        table = np.stack([np.bincount(mine, minlength=p.grow + 1), np.bincount(theirs, minlength=p.grow + 1)])
        assert stats.chi2_contingency(table).pvalue > 1e-3  # the same distribution
    assert 0.4 < np.mean(flips) < 0.6
    assert min(deltas) >= -0.25 - 1e-6 and max(deltas) < 0.25 + 1e-6
    assert stats.ks_2samp(deltas, batched.delta.tolist()).pvalue > 1e-3


@pytest.mark.parametrize("name", ["cifar10", "mnist", "fashion-mnist", "svhn", "imagenette"])
def test_draw_frequencies(name):
    p = BatchPipeline.for_dataset(name)
    d = draw_augmentation(20_000, p, torch.Generator().manual_seed(5))
    for offsets in (d.top, d.left):
        assert offsets.min() == 0 and offsets.max() == p.grow
        assert chi2_uniform(offsets.tolist(), p.grow + 1) > 1e-3
    assert abs(d.flip.float().mean().item() - 0.5) < 0.02 if p.flip else not d.flip.any()
    assert d.delta.min() >= -0.25 and d.delta.max() < 0.25
    assert abs(d.delta.mean().item()) < 0.01 and abs(d.delta.var().item() - 0.5**2 / 12) < 0.002
    assert stats.kstest(d.delta.numpy(), stats.uniform(-0.25, 0.5).cdf).pvalue > 1e-3


def test_imagenette_augmented_view_is_the_per_sample_family(roots):
    """Photos of several sizes: held after the resize, cropped, flipped and shifted per batch."""
    data = load("imagenette", roots)
    split = device_bundle(data, "cpu").train
    assert split.images.dtype == torch.float32 and split.images.shape[1:] == (3, 138, 138)
    torch.manual_seed(1)
    for i in range(4):
        out = data.train[i][0]
        top, left, flip, delta = recover_draws(out, split.images[i], split.pipeline)
        assert 0 <= top <= 10 and 0 <= left <= 10 and -0.25 <= delta < 0.25


def test_augment_batch_shapes_and_determinism(roots):
    images, _ = raw_images(load("cifar10", roots).train.base)
    a = augment_batch(images, "cifar10", torch.Generator().manual_seed(3))
    b = augment_batch(images, "cifar10", torch.Generator().manual_seed(3))
    assert a.shape == (len(images), 3, 32, 32) and torch.equal(a, b)
    means, stds = a.mean(dim=(1, 2, 3)), a.std(dim=(1, 2, 3), correction=0)
    assert (means.abs() <= 0.25 + 1e-5).all() and torch.allclose(stds, torch.ones_like(stds), atol=1e-4)


def test_device_split_batches_cover_every_sample_once(roots):
    split = device_bundle(load("cifar10", roots), "cpu").train
    ys = [y for _, y in split.batches(6, shuffle=True, generator=torch.Generator().manual_seed(0))]
    assert [len(y) for y in ys] == [6, 6, 6, 2]
    assert sorted(torch.cat(ys).tolist()) == sorted(split.labels.tolist())
    again = [x for x, _ in split.batches(6, shuffle=True, generator=torch.Generator().manual_seed(0))]
    first = [x for x, _ in split.batches(6, shuffle=True, generator=torch.Generator().manual_seed(0))]
    assert all(torch.equal(a, b) for a, b in zip(again, first))
    other = next(iter(split.batches(6, shuffle=True, generator=torch.Generator().manual_seed(1))))[0]
    assert not torch.equal(other, first[0])


def test_device_split_rejects_bad_input():
    with pytest.raises(ValueError, match="non-finite"):
        DeviceSplit(torch.tensor([[float("nan")]]), torch.tensor([0]), None)
    with pytest.raises(ValueError, match="2 images but 1 labels"):
        DeviceSplit(torch.zeros(2, 1), torch.tensor([0]), None)
    with pytest.raises(ValueError, match="TransformedDataset"):
        device_bundle(D.DataBundle("x", [1], [1], [1], 2, 1, 1), "cpu")


# ------------------------------------------------------------------------------------------------
# the training loop's opt-in fast path


def test_train_config_defaults_keep_the_default_path():
    cfg = TrainConfig(epochs=1)
    assert (cfg.device_data, cfg.compile, cfg.precision, cfg.fast_step) == (False, None, "float32", False)
    for bad in (dict(compile="max-autotune"), dict(precision="fp16")):
        with pytest.raises(ValueError, match="valid choices"):
            TrainConfig(epochs=1, **bad)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        train(ModelConfig("fnn", 10, 1, 8, fnn_width=4, fnn_depth=1), load_dataset("digits", flat=True),
              TrainConfig(epochs=1, compile="cuda-graph"), device="cpu", progress=False)


def test_lookahead_sync_is_the_per_parameter_arithmetic():
    """Lookahead.sync (multi-tensor) against the per-parameter update written out by hand."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    a = make_optimizer(model, TrainConfig(epochs=1, lookahead_k=1))
    twin = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    twin.load_state_dict(model.state_dict())
    b = make_optimizer(twin, TrainConfig(epochs=1, lookahead_k=1))
    x = torch.randn(8, 5)
    for m in (model, twin):
        m(x).square().mean().backward()
    a.step()  # inner step + Lookahead.sync
    b.optimizer.step()
    with torch.no_grad():
        for p, slow in zip(twin.parameters(), b.slow):
            slow.add_(p - slow, alpha=b.alpha)
            p.copy_(slow)
    for p, q, s, t in zip(model.parameters(), twin.parameters(), a.slow, b.slow):
        assert torch.equal(p, q) and torch.equal(s, t)


def test_fast_path_on_in_memory_data_is_the_default_path_bit_for_bit():
    """Digits hold no augmentation: the fast loop (device-held data, sums on the device, one
    multi-tensor Lookahead sync) must take exactly the default loop's steps."""
    data = load_dataset("digits", train_limit=160)
    mcfg = ModelConfig("residual", 10, 1, 8, blocks_for_depth(10), width=1 / 16)
    runs = [train(mcfg, data, TrainConfig(epochs=2, batch_size=32, lookahead_k=3, **kw), device="cpu", progress=False)
            for kw in ({}, {"device_data": True})]
    for p, q in zip(runs[0].model.state_dict().values(), runs[1].model.state_dict().values()):
        assert torch.equal(p, q)
    for r0, r1 in zip(runs[0].history[1:], runs[1].history[1:]):  # after epoch 0 (untrained)
        for key in ("train_loss_running", "train_acc_running", "test_acc", "test_loss", "train_acc"):
            assert r0[key] == pytest.approx(r1[key], rel=1e-12, abs=1e-12)
    assert runs[1].train_config.device_data and runs[1].summary()["train_config"]["device_data"] is True


@pytest.mark.parametrize("precision", ["float32", "bf16-mixed"])
def test_device_data_training_on_cifar_files(precision, roots, tmp_path):
    data = load("cifar10", roots)
    mcfg = ModelConfig("residual", 10, 3, 32, blocks_for_depth(10), width=1 / 16)
    tcfg = TrainConfig(epochs=2, batch_size=8, device_data=True, precision=precision)
    first = train(mcfg, data, tcfg, tmp_path / "run", device="cpu", progress=False, stop_after=1)
    resumed = train(mcfg, data, tcfg, tmp_path / "run", device="cpu", progress=False)
    straight = train(mcfg, data, tcfg, None, device="cpu", progress=False)
    assert first.status == "running" and resumed.status == straight.status == "finished"
    assert all(np.isfinite(r["train_loss_running"]) and 0 <= r["test_acc"] <= 1 for r in resumed.history[1:])
    for p, q in zip(resumed.model.state_dict().values(), straight.model.state_dict().values()):
        assert torch.equal(p, q)  # a resumed run follows the uninterrupted one
    assert '"precision": "' + precision + '"' in (tmp_path / "run" / "run.json").read_text()


def test_fast_path_reports_divergence_and_data_errors():
    data = load_dataset("digits", train_limit=100)
    mcfg = ModelConfig("residual", 10, 1, 8, blocks_for_depth(4), width=1 / 16)
    # two batches in epoch 1 (the second, partial one kept): the first step's update poisons the second
    diverged = train(mcfg, data, TrainConfig(epochs=2, lr=1e30, device_data=True, drop_last=False), device="cpu",
                     progress=False)
    assert diverged.status == "diverged" and diverged.diverged_epoch == 1
    x, y = data.train.tensors
    x = x.clone()
    x[3, 0, 0, 0] = float("nan")
    bad = D.DataBundle("bad", torch.utils.data.TensorDataset(x, y), data.train_eval, data.test, 10, 1, 8)
    with pytest.raises(ValueError, match="non-finite"):
        train(mcfg, bad, TrainConfig(epochs=1, compile=None, precision="bf16-mixed"), device="cpu", progress=False)


@pytest.fixture
def isa_from_cpu_flags(monkeypatch):
    """Inductor's x86 vector ISAs taken from the CPU's flags instead of compiled probes.

    Before its first CPU kernel, inductor checks each candidate ISA (AMX, AVX-512 VNNI, AVX-512,
    AVX2) by compiling and loading a test program with ATen's vector headers: about 17 of the
    40 CPU-seconds of the test below on a cold inductor cache (a fresh machine). With
    ``vec_isa_ok=True`` it trusts the flags; the ISA it picks is still the pinned
    ``ATEN_CPU_CAPABILITY`` (AVX2), and the kernels are the same source compiled with the same
    flags (the same files, under the same cache keys, as with the probes). The list is cached per
    process, so it is dropped before and after."""
    import torch._inductor.config as inductor_config
    from torch._inductor import cpu_vec_isa

    monkeypatch.setattr(inductor_config.cpp, "vec_isa_ok", True)
    cpu_vec_isa.valid_vec_isa_list.cache_clear()
    yield
    monkeypatch.undo()
    cpu_vec_isa.valid_vec_isa_list.cache_clear()


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile's CPU backend (inductor) needs a C++ compiler")
def test_compile_reduce_overhead_runs_and_agrees_on_the_cpu(isa_from_cpu_flags):
    data = load_dataset("digits", flat=True, train_limit=128)
    mcfg = ModelConfig("fnn", 10, 1, 8, fnn_width=8, fnn_depth=2)
    eager = train(mcfg, data, TrainConfig(epochs=1, device_data=True), device="cpu", progress=False)
    compiled = train(mcfg, data, TrainConfig(epochs=1, compile="reduce-overhead"), device="cpu", progress=False)
    assert compiled.status == "finished"
    assert np.isfinite(compiled.history[-1]["train_loss_running"])
    assert compiled.history[-1]["train_loss_running"] == pytest.approx(eager.history[-1]["train_loss_running"], rel=1e-4)


# ------------------------------------------------------------------------------------------------
# measure_model's one grouping path, on planted structure


def _collapsing_net() -> nn.Module:
    torch.manual_seed(0)
    model = build_model(ModelConfig("plain", 3, 1, 8, blocks_for_depth(10), width=1 / 16))
    with torch.no_grad():
        model.layer2[0].conv2.weight.zero_()  # block 2's output is ReLU(bn shift) = const for every input
    return model


def test_a_block_forced_constant_makes_one_bundle_from_there_on():
    """Block 2's output is the same for every input: one bundle there and after, whose entropy is
    that of the label counts, sum_c n_c/N log(N/n_c); block 1 keeps all 48 samples apart."""
    torch.manual_seed(1)
    x, y = torch.randn(48, 1, 8, 8), torch.randint(0, 3, (48,))
    rows = B._measure_rows(_collapsing_net(), x, y, num_classes=3, lr=1e-3, batch_size=64)
    counts = torch.bincount(y, minlength=3).double()
    by_hand = float((counts / 48 * torch.log(48 / counts)).sum())
    assert [r["num_bundles"] for r in rows] == [48, 1, 1, 1]
    assert all(r["entropy"] == pytest.approx(by_hand, rel=1e-12) for r in rows[1:]) and rows[0]["entropy"] == 0.0
    assert B._measure_rows(_collapsing_net(), x, y, num_classes=3, lr=1e-3, batch_size=64,
                           taps=[rows[-1]["tap"]]) == rows[-1:]


def test_hash_collisions_are_decided_exactly_and_non_finite_values_refused(monkeypatch):
    torch.manual_seed(2)
    model = build_model(ModelConfig("residual", 3, 1, 8, blocks_for_depth(10), width=1 / 16))
    x, y = torch.randn(20, 1, 8, 8), torch.randint(0, 3, (20,))
    kw = dict(num_classes=3, lr=1e-3, batch_size=64)
    honest = B._measure_rows(model, x, y, **kw)
    monkeypatch.setattr(B, "_row_hash", lambda lanes, mult: torch.zeros(len(lanes), dtype=torch.int64))
    assert B._measure_rows(model, x, y, **kw) == honest  # every row collides: the exact check decides
    monkeypatch.undo()
    x[5, 0, 0, 0] = float("nan")
    with pytest.raises(B.NonFiniteActivationError):
        B._measure_rows(model, x, y, **kw)
    # finite activations whose scaled values overflow to -inf are kept: they bundle
    fnn = build_model(ModelConfig("fnn", 2, 1, 8, fnn_width=4, fnn_depth=1))
    big, labels = torch.randn(6, 64) * 1e34, torch.tensor([0, 1, 0, 1, 1, 0])
    assert B._measure_rows(fnn, big, labels, num_classes=2, lr=1e30, batch_size=1)[0]["num_bundles"] < 6


# ------------------------------------------------------------------------------------------------
# where CUDA exists


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_metric_agrees_with_the_cpu(monkeypatch):
    """All taps of a plain and a residual net, at lr where they are distinct and where they bundle,
    plus a net whose block collapses: CUDA gives the CPU's rows."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    torch.manual_seed(3)
    x, y = torch.randn(96, 1, 8, 8), torch.randint(0, 3, (96,))
    models = [build_model(ModelConfig(k, 3, 1, 8, blocks_for_depth(20), width=1 / 8)) for k in ("plain", "residual")]
    for model in [*models, _collapsing_net()]:
        for lr in (1e-3, 1e-9):
            kw = dict(num_classes=3, lr=lr, batch_size=64)
            cpu = B._measure_rows(model, x, y, **kw)
            rows = B._measure_rows(model.cuda(), x, y, **kw)
            for a, b in zip(cpu, rows):
                assert {k: v for k, v in a.items() if k != "entropy"} == {k: v for k, v in b.items() if k != "entropy"}
                assert b["entropy"] == pytest.approx(a["entropy"], rel=1e-12, abs=0)
            model.cpu()


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_device_data_and_graph_step(roots, tmp_path):
    data = load("cifar10", roots)
    cpu, gpu = device_bundle(data, "cpu"), device_bundle(data, "cuda")
    n = len(cpu.test)
    torch.testing.assert_close(gpu.test.batch(torch.arange(n, device="cuda"))[0].cpu(),
                               cpu.test.batch(torch.arange(n))[0], atol=1e-5, rtol=0)
    mcfg = ModelConfig("residual", 10, 3, 32, blocks_for_depth(10), width=1 / 8)
    for compile_mode in ("cuda-graph", None):
        run = train(mcfg, data, TrainConfig(epochs=2, batch_size=8, device_data=True, compile=compile_mode),
                    tmp_path / str(compile_mode), device="cuda", progress=False)
        assert run.status == "finished" and all(np.isfinite(r["train_loss_running"]) for r in run.history)
