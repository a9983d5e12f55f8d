"""What scale ``long`` costs on this machine: the lesion net and one auto-tune search, side by side.

    python benchmarks/bench_long.py [--steps 100] [--search results/long/autotune/searches/X.json]

``long``'s budget: notebooks 05 and 06 (the lesion net and one auto-tune search) within 2 h 30 min
on 2 CPU cores, resumable, under the pinned numerics (an earlier issue asked for 90 minutes). The two run side by side, one process (one core) each, as ``make reproduce
SCALE=long`` runs them; the search's attempts run one after another on its core.

For each net a fresh subprocess times ``--steps`` optimiser steps (after 5 warm-up steps) of the
real step: forward, cross-entropy, backward, RAdam inside Lookahead, with the ``long`` preset's
model config (width, digits 8x8 inputs, batch 64) and train config. The lesion net is timed
*beside* each search net (two processes started together), so both see the other core busy, as in
a real run. This is done under the pinned numerics (the default; what ``figures/long`` is made
with) and under ``REPRODUCE_NUMERICS=native`` (1 thread per process).

The search's attempts (their blocks and epochs trained) come from a search log written by
``make reproduce SCALE=long`` (``--search``; by default the seed-0 plain search under
``results/long``); without one, the attempts of the search at ``long`` seed 0 are assumed (two
attempts pruned after 1 epoch: plain-120, then 3-1-41-3; then 3-1-2-3 trained 120 epochs).

Printed: seconds per step of each net, the hours of the lesion net (120 x 792 steps) and of the
search (sum over attempts of epochs x 792 steps), the wall time of the two side by side (the
longer), and its ratio to the 150-minute budget. Only optimiser steps are counted: the per-epoch
evaluation, bundle measurements and checkpoints come on top. Nothing asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from _fresh import CLEARED, ROOT, finish, start

BUDGET_MIN = 150.0
ASSUMED_ATTEMPTS = [((3, 12, 41, 3), 1), ((3, 1, 41, 3), 1), ((3, 1, 2, 3), 120)]

_CHILD = """
import json, sys, time
import reproduce, torch
import torch.nn.functional as F
import reproduce.config.numerics as numerics
from reproduce.data.datasets import load_dataset
from reproduce.models.nets import conv_config
from reproduce.config.scales import get_scale
from reproduce.training.loop import TrainConfig, make_optimizer
kind, blocks, steps = sys.argv[1], tuple(int(b) for b in sys.argv[2].split("-")), int(sys.argv[3])
scale = get_scale("long")
data = load_dataset("digits")
torch.manual_seed(0)
model = reproduce.models.build_model(conv_config(kind, blocks, data, width=scale.width))
opt = make_optimizer(model, TrainConfig(epochs=scale.epochs, batch_size=scale.batch_size, lr=scale.lr,
                                        **scale.train_options()))
x, y = data.train.tensors
g = torch.Generator().manual_seed(1)
batches = [torch.randint(0, len(x), (scale.batch_size,), generator=g) for _ in range(8)]
def step(i):
    idx = batches[i % len(batches)]
    opt.zero_grad()
    F.cross_entropy(model(x[idx]), y[idx]).backward()
    opt.step()
for i in range(5):
    step(i)
start = time.perf_counter()
for i in range(steps):
    step(i)
print(json.dumps({"seconds_per_step": (time.perf_counter() - start) / steps, "env": numerics.environment()}))
"""

def _start(kind: str, blocks: tuple[int, ...], steps: int, env: dict[str, str]) -> subprocess.Popen:
    # OMP_NUM_THREADS of the caller too: each child computes on the threads its policy gives it
    return start(_CHILD, [kind, "-".join(map(str, blocks)), steps], env, clear=CLEARED + ("OMP_NUM_THREADS",))


def _attempts(scale, path: Path | None) -> tuple[list[tuple[tuple[int, ...], int]], str]:
    """The (blocks, epochs trained) of each attempt of the search log at ``path`` (default: the one
    ``make reproduce SCALE=long`` writes for the plain search of seed 0), and where they came from."""
    from reproduce.experiments.autotune import AutotuneConfig, load_search_log, search_log_path

    given = path is not None
    if path is None:
        path = search_log_path(scale, AutotuneConfig.from_scale(scale, "plain"), dataset="digits", seed=0)
    log = load_search_log(path)
    if log is None and given:
        raise SystemExit(f"--search {path}: not a readable search log (a JSON file with 'attempts', as "
                         f"results/long/autotune/searches/ holds)")
    if log is None:
        return ASSUMED_ATTEMPTS, f"assumed (no search log at {path})"
    attempts = [(tuple(a["blocks"]), int(a["epochs_done"])) for a in log["attempts"]]
    if log.get("status") != "found":
        return attempts, f"{path} (search {log.get('status')}: its attempts so far)"
    return attempts, str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--search", type=Path, default=None, help="a search log (JSON) written at scale long")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    sys.path.insert(0, str(ROOT))
    from reproduce.data.datasets import load_dataset
    from reproduce.models.nets import blocks_for_depth
    from reproduce.config.scales import get_scale
    from reproduce.training.loop import TrainConfig

    scale = get_scale("long")
    tcfg = TrainConfig(epochs=scale.epochs, batch_size=scale.batch_size, **scale.train_options())
    steps_per_epoch = tcfg.steps_per_epoch(len(load_dataset("digits").train))
    lesion = blocks_for_depth(scale.lesion_depth)
    attempts, source = _attempts(scale, args.search)
    nets = list(dict.fromkeys(b for b, _ in attempts))
    print(f"scale long: {steps_per_epoch} steps per epoch, lesion net residual {'-'.join(map(str, lesion))} for "
          f"{scale.lesion_epochs} epochs; search attempts from {source}: "
          + ", ".join(f"{'-'.join(map(str, b))} x {e} epoch(s)" for b, e in attempts))
    print(f"{args.steps} timed steps per net (after 5 warm-up), lesion net beside each search net; "
          f"{os.cpu_count()} CPUs visible")
    policies = {"pinned": {}, "native": {"REPRODUCE_NUMERICS": "native", "REPRODUCE_THREADS": "1"}}
    totals = {}
    for name, env in policies.items():
        lesion_s, net_s = [], {}
        for blocks in nets:
            pair = [_start("residual", lesion, args.steps, env), _start("plain", blocks, args.steps, env)]
            a, b = (finish(p) for p in pair)
            lesion_s.append(a["seconds_per_step"])
            net_s[blocks] = b["seconds_per_step"]
        lesion_sps = statistics.median(lesion_s)
        lesion_h = lesion_sps * scale.lesion_epochs * steps_per_epoch / 3600
        search_h = sum(net_s[b] * e * steps_per_epoch for b, e in attempts) / 3600
        wall_min = max(lesion_h, search_h) * 60
        totals[name] = wall_min
        print(f"\n{name} ({a['env']['cpu_capability']}, {a['env']['threads']} thread per process)")
        print(f"  lesion residual-{scale.lesion_depth:<3} {lesion_sps * 1e3:7.1f} ms/step  {lesion_h:5.2f} h")
        for b in nets:
            epochs = sum(e for bb, e in attempts if bb == b)
            print(f"  search {'-'.join(map(str, b)):<14} {net_s[b] * 1e3:7.1f} ms/step  x {epochs:>3} epoch(s)")
        print(f"  search total                         {search_h:5.2f} h")
        print(f"  side by side: {wall_min:.0f} min of steps = {wall_min / BUDGET_MIN:.2f} x the {BUDGET_MIN:.0f}-minute "
              f"budget")
    print(f"\nnative / pinned wall time: {totals['native'] / totals['pinned']:.2f}")


if __name__ == "__main__":
    main()
