"""What the pinned numeric environment (:mod:`reproduce.config.numerics`) costs, measured side by side.

    python benchmarks/bench_numerics.py [--steps 200] [--repeats 1]

One fixed training workload -- ``--steps`` SGD steps of a plain-20 conv net (width 1/4) on
random 8x8 one-channel inputs, batch 64 -- each in a fresh subprocess (the environment is fixed
at ``import reproduce``), under:

* native: ``REPRODUCE_NUMERICS=native`` with 2 threads (the machine's own kernels), and with 1
  thread (the instruction sets alone against pinned);
* pinned: the default policy (1 thread, AVX2 kernels, deterministic algorithms);
* pinned x2: two pinned processes started together, as a sweep runs them; its time is the
  slower of the two, for twice the work.

Printed: seconds of the training loop (after 5 warm-up steps; the median over ``--repeats``)
and the throughput relative to native (work done per second / native's). Nothing asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess

from _fresh import finish, start

_CHILD = """
import json, sys, time
import reproduce, torch
import reproduce.config.numerics as numerics
from reproduce.models.nets import ModelConfig, blocks_for_depth, build_model
steps = int(sys.argv[1])
torch.manual_seed(0)
model = build_model(ModelConfig("plain", 10, 1, 8, blocks_for_depth(20), width=0.25))
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
g = torch.Generator().manual_seed(1)
x, y = torch.randn(64, 1, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
def step():
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
for _ in range(5):
    step()
start = time.perf_counter()
for _ in range(steps):
    step()
print(json.dumps({"seconds": time.perf_counter() - start, "env": numerics.environment()}))
"""

def _start(steps: int, **env: str) -> subprocess.Popen:
    return start(_CHILD, [steps], env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    if args.steps < 1 or args.repeats < 1:
        parser.error(f"--steps and --repeats must be >= 1, got {args.steps}, {args.repeats}")

    times: dict[str, list[float]] = {"native (2 threads)": [], "native (1 thread)": [], "pinned (1 thread)": [],
                                     "pinned x2 processes": []}
    envs: dict[str, dict] = {}
    for _ in range(args.repeats):
        r = finish(_start(args.steps, REPRODUCE_NUMERICS="native", REPRODUCE_THREADS="2"))
        times["native (2 threads)"].append(r["seconds"])
        envs["native (2 threads)"] = r["env"]
        r = finish(_start(args.steps, REPRODUCE_NUMERICS="native", REPRODUCE_THREADS="1"))
        times["native (1 thread)"].append(r["seconds"])
        envs["native (1 thread)"] = r["env"]
        r = finish(_start(args.steps))
        times["pinned (1 thread)"].append(r["seconds"])
        envs["pinned (1 thread)"] = r["env"]
        pair = [_start(args.steps), _start(args.steps)]
        results = [finish(p) for p in pair]
        times["pinned x2 processes"].append(max(r["seconds"] for r in results))
        envs["pinned x2 processes"] = results[0]["env"]

    work = {"native (2 threads)": 1, "native (1 thread)": 1, "pinned (1 thread)": 1, "pinned x2 processes": 2}
    native = statistics.median(times["native (2 threads)"])
    print(f"{args.steps} SGD steps, plain-20 width 1/4, 8x8 inputs, batch 64; median of {args.repeats}; "
          f"{os.cpu_count()} CPUs visible")
    print(f"{'setting':<22}{'capability':>11}{'threads':>8}{'seconds':>9}{'throughput vs native':>22}")
    for name, values in times.items():
        seconds = statistics.median(values)
        env = envs[name]
        print(f"{name:<22}{env['cpu_capability']:>11}{env['threads']:>8}{seconds:>9.2f}"
              f"{work[name] * native / seconds:>21.2f}x")


if __name__ == "__main__":
    main()
