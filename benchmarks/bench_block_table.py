"""The cost of a block table against plain forward passes, measured side by side in one run.

    python benchmarks/bench_block_table.py [--positions 512] [--repeats 3] [--quick]

A 12-layer GPT-2-sized model (``GPT2Config()``: 768 wide, 12 heads, vocabulary 50,257; random
initialisation, nothing downloaded) on ``--positions`` token positions (sequences of 128 tokens):
``reproduce.experiments.layer_removal.block_table`` -- one forward with the block hooks, the
bundles, entropy and distance to bundling of every layer's update, Block Influence and the angular
distance -- against one plain forward of the same inputs (eval mode, no gradients). The two are
timed alternately (median of ``--repeats`` each, after a warm-up), so a change of the machine's
speed hits both. The target: the table costs at most 3 forward passes. Also printed: the table
without the distance to bundling (its ``N^2`` pairs per layer), to show where the cost goes.
``--quick``: a 4-layer, 256-wide model (a check that the script runs).

Ratios only; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reproduce.experiments.layer_removal import block_table, next_token_labels  # noqa: E402
from reproduce.models.adapters import require  # noqa: E402
from reproduce.models.nets import eval_mode  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--positions", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    transformers = require("transformers")
    torch.manual_seed(0)
    config = (transformers.GPT2Config(n_layer=4, n_embd=256, n_head=4) if args.quick else transformers.GPT2Config())
    config.pad_token_id = config.eos_token_id
    model = transformers.GPT2LMHeadModel(config).eval()
    seq = 128
    b = max(1, -(-(args.positions + args.positions // seq) // seq))
    ids = torch.randint(0, config.vocab_size, (b, seq), generator=torch.Generator().manual_seed(1))
    labels = next_token_labels(ids)
    labels.view(-1)[(labels.view(-1) != -100).nonzero()[args.positions:]] = -100  # exactly --positions samples
    n = int((labels != -100).sum())
    kw = dict(num_classes=config.vocab_size, lr=1e-3, batch_size=64)

    def forward() -> None:
        with eval_mode(model):
            model(input_ids=ids)

    calls = {"forward": forward,
             "block table": lambda: block_table(model, {"input_ids": ids}, labels, **kw),
             "block table, no distance": lambda: block_table(model, {"input_ids": ids}, labels, distance=False, **kw)}
    times: dict[str, list[float]] = {k: [] for k in calls}
    for fn in calls.values():
        fn()  # warm-up
    for _ in range(args.repeats):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"GPT-2 {config.n_layer} layers x {config.n_embd} wide, vocabulary {config.vocab_size}; "
          f"{n} token positions ({b} x {seq} tokens); torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
          f"median of {args.repeats}, taken alternately")
    print(f"{'call':<28} {'seconds':>9} {'forwards':>9}")
    for name, t in med.items():
        print(f"{name:<28} {t:9.3f} {t / med['forward']:9.2f}")
    ratio = med["block table"] / med["forward"]
    print(f"target: block table <= 3 forward passes: {'holds' if ratio <= 3 else 'does not hold'} ({ratio:.2f})")


if __name__ == "__main__":
    main()
