"""Speed and memory of the bundle metric, measured side by side in one run.

    python benchmarks/bench_bundles.py [--quick] [--threads 2]

(a) ``bundle_stats`` on 512 x 16384 activations against the published algorithm (a loop over the
    samples not yet in a bundle, each compared with all N rows), written here in torch as the
    baseline; also one plain read of the same tensor (``sum``) as the floor.
(b) all taps of the 120-layer residual net (width 1/4) on 512 digit-shaped samples:
    ``measure_model`` against one plain forward pass.
(c) peak memory of (b) against the forward pass alone: each runs in a fresh subprocess, after a
    warm-up on 2 samples; the peak resident set size is reset (``/proc/self/clear_refs``, Linux)
    just before the measured call and read (``VmHWM``) right after; printed is the growth of that
    peak above the resident size before the call -- everything the call needed at its worst
    moment, torch's CPU allocations included. On CUDA it is ``torch.cuda.max_memory_allocated``.

Ratios only; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reproduce.metric.bundles import bundle_stats, measure_model, weight_amplitude  # noqa: E402
from reproduce.models.nets import ModelConfig, blocks_for_depth, build_model  # noqa: E402

LR, BS, W = 1e-3, 64, 1.0


def timed(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up (and the result)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def published_loop(a: torch.Tensor) -> int:
    """The released algorithm: for every sample not yet bundled, compare it with all N rows."""
    n = a.shape[0]
    t = W - (a.reshape(n, -1).float() * LR) * (1.0 / BS)
    ids = torch.full((n,), -1, dtype=torch.int64)
    k = 0
    for i in range(n):
        if ids[i] >= 0:
            continue
        eq = (t == t[i]).all(1) & (ids < 0)
        ids[eq] = k
        k += 1
    return k


def bench_stats(n: int, d: int, bundles: int | None, quick: bool) -> dict:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, d, generator=g)
    if bundles is not None:
        a = a[torch.randint(0, bundles, (n,), generator=g)]
    y = torch.randint(0, 10, (n,), generator=g)
    fast, st = timed(lambda: bundle_stats(a, y, num_classes=10, lr=LR, batch_size=BS, weight_amplitude=W),
                     3 if quick else 11)
    loop, k = timed(lambda: published_loop(a), 1 if quick else 3)
    floor, _ = timed(lambda: a.sum(), 11)
    assert st.num_bundles == k, (st.num_bundles, k)
    return {"fast": fast, "loop": loop, "floor": floor, "bundles": k}


def residual120(n: int):
    torch.manual_seed(0)
    model = build_model(ModelConfig("residual", 10, 1, 8, blocks_for_depth(120), width=0.25))
    x = torch.randn(n, 1, 8, 8)
    y = torch.randint(0, 10, (n,))
    return model, x, y


def forward(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def measure(model, x, y):
    return measure_model(model, x, y, num_classes=10, lr=LR, batch_size=BS)


def _kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def memory_child(what: str, n: int, threads: int) -> None:
    """Run in a fresh process: peak memory growth of one call of ``what``, printed as JSON (bytes)."""
    torch.set_num_threads(threads)
    model, x, y = residual120(n)
    cuda = torch.cuda.is_available()
    if cuda:
        model, x, y = model.cuda(), x.cuda(), y.cuda()
    run = (lambda: forward(model, x)) if what == "forward" else (lambda: measure(model, x, y))
    warm = (lambda: forward(model, x[:2])) if what == "forward" else (lambda: measure(model, x[:2], y[:2]))
    warm()
    if cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        Path("/proc/self/clear_refs").write_text("5")
        base = _kib("VmRSS")
        run()
        peak = (_kib("VmHWM") - base) * 1024
    print(json.dumps({"peak": peak}))


def memory_of(what: str, n: int, threads: int) -> int:
    out = subprocess.run([sys.executable, __file__, "--memory-child", what, "--n", str(n), "--threads", str(threads)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n", type=int, default=512)
    p.add_argument("--memory-child", choices=["forward", "measure"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.n, args.threads)
        return
    torch.set_num_threads(args.threads)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"torch {torch.__version__}, {args.threads} threads, device cpu, {os.cpu_count()} cores, "
          f"load average {load} (other processes' load distorts the timings)")
    rows = []

    r = bench_stats(args.n, 16384, None, args.quick)
    print(f"(a) bundle_stats {args.n}x16384, all distinct ({r['bundles']} bundles): "
          f"{r['fast'] * 1e3:.2f} ms; published loop {r['loop'] * 1e3:.0f} ms; "
          f"one read (sum) {r['floor'] * 1e3:.2f} ms")
    rows.append(("(a) loop / bundle_stats, all distinct", r["loop"] / r["fast"], ">= 50 (aim 300)"))
    rows.append(("(a) bundle_stats / one read", r["fast"] / r["floor"], "floor = 1"))
    r2 = bench_stats(args.n, 16384, 16, args.quick)
    print(f"    same, {r2['bundles']} planted bundles: {r2['fast'] * 1e3:.2f} ms; published loop "
          f"{r2['loop'] * 1e3:.0f} ms")
    rows.append(("(a') loop / bundle_stats, 16 bundles", r2["loop"] / r2["fast"], "loop runs 16 times only"))

    model, x, y = residual120(args.n)
    w = weight_amplitude(model)
    t_fwd, _ = timed(lambda: forward(model, x), 3 if args.quick else 5)
    t_meas, df = timed(lambda: measure(model, x, y), 3 if args.quick else 5)
    print(f"(b) residual-120 (width 1/4), {len(df)} taps, N={args.n}, w_max={w:.3f}: forward "
          f"{t_fwd * 1e3:.0f} ms; measure_model {t_meas * 1e3:.0f} ms")
    rows.append(("(b) measure_model / forward", t_meas / t_fwd, "<= 2.0"))

    m_fwd = memory_of("forward", args.n, args.threads)
    m_meas = memory_of("measure", args.n, args.threads)
    print(f"(c) peak memory growth: forward {m_fwd / 2**20:.1f} MiB; measure_model {m_meas / 2**20:.1f} MiB")
    rows.append(("(c) peak memory measure_model / forward", m_meas / max(m_fwd, 1), "small"))

    print()
    print(f"{'measurement':44s} {'ratio':>9s}  target")
    for name, ratio, target in rows:
        print(f"{name:44s} {ratio:9.2f}  {target}")


if __name__ == "__main__":
    main()
