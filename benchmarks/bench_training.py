"""Training-loop throughput of ``reproduce.training.train`` against a bare PyTorch loop.

Both loops train the same model (same config, same initial weights) on the same in-memory digits
tensors with the same optimiser (RAdam inside Lookahead), the same batch size and the same
per-epoch shuffling; both evaluate the test set once per epoch. ``train`` additionally writes a
checkpoint, ``metrics.jsonl`` and ``run.json`` atomically after every epoch, and keeps running
statistics. The two are run alternately, ``--repeats`` times each, and the medians are compared.

    python benchmarks/bench_training.py [--depth 20] [--epochs 3] [--repeats 3] [--threads 2]

Prints samples/s of each and the ratio ours / bare (target >= 0.9).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from reproduce.data.datasets import load_dataset
from reproduce.models.nets import ModelConfig, blocks_for_depth, build_model
from reproduce.training.loop import TrainConfig, make_optimizer, train


def bare_loop(mcfg: ModelConfig, tcfg: TrainConfig, data) -> float:
    """A plain PyTorch loop: seconds for ``tcfg.epochs`` epochs (train steps + a test pass)."""
    x, y = data.train.tensors
    xt, yt = data.test.tensors
    torch.manual_seed(tcfg.seed)
    model = build_model(mcfg)
    opt = make_optimizer(model, tcfg)
    start = time.perf_counter()
    for epoch in range(tcfg.epochs):
        model.train()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(x), tcfg.batch_size):
            idx = order[i:i + tcfg.batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            for i in range(0, len(xt), 256):
                model(xt[i:i + 256]).argmax(1).eq(yt[i:i + 256]).sum().item()
    return time.perf_counter() - start


def our_loop(mcfg: ModelConfig, tcfg: TrainConfig, data) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train(mcfg, data, tcfg, tmp, progress=False)
        seconds = time.perf_counter() - start
    assert result.status == "finished", result.status
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    data = load_dataset("digits", seed=0)
    n = len(data.train) * args.epochs
    mcfg = ModelConfig("residual", data.num_classes, data.in_channels, data.image_size,
                       blocks_for_depth(args.depth), width=args.width)
    # eval_train=False: the bare loop does not evaluate the training set either
    tcfg = TrainConfig(epochs=args.epochs, eval_train=False)

    bare_loop(mcfg, TrainConfig(epochs=1), data)  # warm-up (allocator, oneDNN kernels)
    bare, ours = [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(mcfg, tcfg, data))
        ours.append(our_loop(mcfg, tcfg, data))
    tb, to = statistics.median(bare), statistics.median(ours)
    print(f"model: residual depth {args.depth}, width {args.width}, {len(data.train)} digits, "
          f"{args.epochs} epochs, batch {tcfg.batch_size}, {args.threads} threads, {args.repeats} repeats")
    print(f"bare PyTorch loop : {tb:7.2f} s  {n / tb:8.0f} samples/s")
    print(f"reproduce.train   : {to:7.2f} s  {n / to:8.0f} samples/s  (with checkpoints + metrics each epoch)")
    print(f"throughput ratio ours / bare = {tb / to:.3f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
