"""A prepared GPU check of the speed work, side by side in one run on one GPU (ratios, no timed
assertions):

(1) data: synthetic CIFAR-10 written in its on-disk format (pickled batches) and loaded through
    ``reproduce.data``; the batched pipeline on the GPU against the per-sample one (values for the
    same images and draws; images/s of the per-sample ``DataLoader`` with 0 and 8 workers and of
    the device batches);
(2) training: images/s of ``train()`` (epoch 2, so after any capture or compilation; evaluation
    of the small test set included, checkpoints excluded) with the fast options against a bare
    eager loop (residual-120, full width, batch 64, RAdam + Lookahead, data already on the GPU);
    target train(device_data, cuda-graph) >= 3x the bare loop;
(3) taps: all taps of residual-120 and plain-120 at full width on 512 CIFAR-shaped samples
    (``measure_model``, one grouping pass per tap) over one forward pass;
    target <= 2x;
(4) agreement: the bundle metric on CUDA against the CPU, for every tap of residual-120 and
    plain-120 (177 real taps) and 4 planted cases; target 0 mismatches;
(5) torch.compile(mode="reduce-overhead") through ``train()``, in a subprocess with a time limit.

    python benchmarks/bench_gpu.py [--budget 330] [--train-images 10000]

TF32 is off (float32, the training default) unless a row says otherwise. Prints a table; exits 1
on a metric or pipeline mismatch, 2 when a section could not run, else 0. Without CUDA it says so
and exits 0 (``--device cpu --quick`` runs every section small on the CPU, to check the script).
Runs from a checkout without installing the package.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


# --------------------------------------------------------------------------------------------
# helpers


class Report:
    """Rows ``(section, measurement, value, target, verdict)`` and the exit status."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []
        self.mismatches = 0
        self.failed = 0

    def add(self, section: str, what: str, value: str, target: str = "", verdict: str = "") -> None:
        self.rows.append((section, what, value, target, verdict))
        print(f"  [{section}] {what}: {value}" + (f"  (target {target}: {verdict})" if target else ""), flush=True)

    def ratio(self, section: str, what: str, value: float, target: str, ok: bool | None) -> None:
        verdict = "" if ok is None else ("ok" if ok else "MISSED")
        self.add(section, what, f"{value:.2f}x", target, verdict)

    def attempt(self, section: str, what: str, fn):
        """``fn()``, or None after reporting its failure (the section goes on)."""
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - one failed measurement must not hide the others
            traceback.print_exc()
            self.failed += 1
            self.add(section, f"{what} FAILED", f"{type(exc).__name__}: {str(exc)[:160]}")
            return None

    def table(self) -> str:
        header = ("section", "measurement", "value", "target", "verdict")
        cells = [header, *self.rows]
        widths = [max(len(str(r[i])) for r in cells) for i in range(5)]
        line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
        return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in self.rows)])


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``fn()`` (synchronised) after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(dev)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def strict_float32() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def write_cifar(root: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    """cifar-10-batches-py: 5 pickled training batches and a test batch ('data' [n, 3072] uint8,
    R, G, B planes; 'labels'), and batches.meta. Images: smooth random blobs plus noise, so that
    crops and flips change them."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def images(n: int) -> np.ndarray:
        yy, xx = np.mgrid[0:32, 0:32]
        centre = rng.uniform(4, 28, (n, 3, 2))
        blobs = np.exp(-((yy - centre[..., :1, None]) ** 2 + (xx - centre[..., 1:, None]) ** 2) / 40.0)
        pixels = 200 * blobs + rng.normal(28, 12, (n, 3, 32, 32))
        return np.clip(pixels, 0, 255).astype(np.uint8).reshape(n, 3072)

    per_batch = [n_train // 5 + (i < n_train % 5) for i in range(5)]
    for b, n in enumerate(per_batch, 1):
        with open(folder / f"data_batch_{b}", "wb") as f:
            pickle.dump({"batch_label": f"training batch {b} of 5", "data": images(n),
                         "labels": rng.integers(0, 10, n).tolist()}, f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"batch_label": "testing batch 1 of 1", "data": images(n_test),
                     "labels": rng.integers(0, 10, n_test).tolist()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": 10000,
                     "num_vis": 3072}, f)


def loader_rate(view, workers: int, seconds: float, batch: int = 64) -> float:
    """Images/s of a per-sample DataLoader (timed from its first batch, for about ``seconds``)."""
    from torch.utils.data import DataLoader

    loader = DataLoader(view, batch_size=batch, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(0), persistent_workers=False)
    it = iter(loader)
    next(it)
    n, t0 = 0, time.perf_counter()
    for xb, _ in it:
        n += len(xb)
        if time.perf_counter() - t0 > seconds:
            break
    rate = n / max(time.perf_counter() - t0, 1e-9)
    del it
    return rate


# --------------------------------------------------------------------------------------------
# sections


def section_data(ctx: dict, rep: Report) -> None:
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as TF

    from reproduce.data.datasets import PerImageStandardize, ResizeWithPad
    from reproduce.data.device_data import apply_augmentation, device_bundle, draw_augmentation

    data, dev = ctx["data"], ctx["dev"]
    t0 = time.perf_counter()
    ddata = device_bundle(data, dev)
    sync(dev)
    ctx["ddata"] = ddata
    rep.add("data", f"device_bundle ({len(ddata.train)} train + {len(ddata.test)} test images to {dev.type})",
            f"{time.perf_counter() - t0:.2f} s")
    # values: unaugmented test images, and augmented ones for fixed draws
    n = min(256, len(data.test))
    want = torch.stack([data.test[i][0] for i in range(n)])
    got = ddata.test.batch(torch.arange(n, device=dev))[0].cpu()
    err = float((got - want).abs().max())
    ok = err <= 1e-5
    rep.mismatches += not ok
    rep.add("data", f"test pipeline: device vs per-sample, {n} images, max |diff|", f"{err:.2e}", "<= 1e-5",
            "ok" if ok else "MISMATCH")
    split = ddata.train
    p = split.pipeline
    m = 64
    draws = draw_augmentation(m, p, torch.Generator(device=dev).manual_seed(0), dev)
    got = apply_augmentation(split.images[:m], p, draws).cpu()
    err = 0.0
    to_float = v2.ToDtype(torch.float32, scale=True)
    for i in range(m):
        x = ResizeWithPad(p.size + p.grow)(to_float(split.images[i].cpu()))
        x = TF.crop(x, int(draws.top[i]), int(draws.left[i]), p.size, p.size)
        x = TF.horizontal_flip(x) if bool(draws.flip[i]) else x
        x = PerImageStandardize()(x) + draws.delta[i].cpu()
        err = max(err, float((got[i] - x).abs().max()))
    ok = err <= 1e-5
    rep.mismatches += not ok
    rep.add("data", f"train pipeline, fixed draws: device vs per-sample, {m} images, max |diff|", f"{err:.2e}",
            "<= 1e-5", "ok" if ok else "MISMATCH")
    # throughput
    seconds = ctx["quick"] and 1.0 or 3.0
    r0 = loader_rate(data.train, 0, seconds)
    rep.add("data", "per-sample pipeline, DataLoader 0 workers", f"{r0:,.0f} img/s")
    workers = min(8, os.cpu_count() or 1)
    rw = loader_rate(data.train, workers, seconds)
    rep.add("data", f"per-sample pipeline, DataLoader {workers} workers", f"{rw:,.0f} img/s")

    def one_pass() -> None:
        for xb, _ in split.batches(64, shuffle=True, generator=torch.Generator().manual_seed(1)):
            pass

    t = timed(one_pass, dev, repeats=3)
    rd = len(split) / t
    rep.add("data", "device batches (augmented, batch 64)", f"{rd:,.0f} img/s")
    rep.ratio("data", f"device batches / DataLoader {workers} workers", rd / rw, "", None)


def bare_loop_rate(ctx: dict, steps: int) -> float:
    """Images/s of a bare eager loop: residual-120 (full width), batch 64, data already on the GPU."""
    from reproduce.training.loop import TrainConfig, make_optimizer
    from reproduce.models.nets import build_model

    dev = ctx["dev"]
    torch.manual_seed(0)
    model = build_model(ctx["mcfg"]).to(dev)
    model.train()
    opt = make_optimizer(model, TrainConfig(epochs=1))
    x = torch.randn(64, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (64,), device=dev)

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(dev)
    return 64 * steps / (time.perf_counter() - t0)


def train_rate(ctx: dict, data, **options) -> float:
    """Images/s of train() in its last epoch (``epochs`` epochs; no checkpoints, eval_train off)."""
    from reproduce.training.loop import TrainConfig, train

    epochs = options.pop("epochs", 2)
    tcfg = TrainConfig(epochs=epochs, eval_train=False, **options)
    res = train(ctx["mcfg"], data, tcfg, None, device=ctx["dev"], progress=False)
    if res.status != "finished":
        raise RuntimeError(f"train() ended {res.status}: {res.history[-1]}")
    return len(data.train) / res.history[-1]["seconds"]


def section_training(ctx: dict, rep: Report) -> None:
    from reproduce.data.datasets import load_dataset

    dev, data = ctx["dev"], ctx["data"]
    strict_float32()
    bare = bare_loop_rate(ctx, 10 if ctx["quick"] else 40)
    ctx["bare"] = bare
    rep.add("train", f"bare eager loop ({ctx['mcfg'].label}, batch 64, data on {dev.type})", f"{bare:,.0f} img/s")
    subset = load_dataset("cifar10", root=ctx["root"], verify_checksums=False,
                          train_limit=min(len(data.train), 512 if ctx["quick"] else 2048))
    runs = [("train(device_data, compile='cuda-graph')", data, dict(device_data=True, compile="cuda-graph"), ">= 3"),
            ("train(device_data), eager", data, dict(device_data=True), ""),
            (f"train() default path (per-sample pipeline, 0 workers, {len(subset.train)} images, epoch 1)", subset,
             dict(epochs=1), ""),
            ("train(device_data, cuda-graph, precision='tf32')", data,
             dict(device_data=True, compile="cuda-graph", precision="tf32"), ""),
            ("train(device_data, cuda-graph, precision='bf16-mixed')", data,
             dict(device_data=True, compile="cuda-graph", precision="bf16-mixed"), "")]
    for what, d, options, target in runs:
        if options.get("compile") == "cuda-graph" and dev.type != "cuda":
            continue
        if target == "" and time.perf_counter() > ctx["deadline"] - 2 * ctx["reserve"]:
            rep.add("train", what, "skipped: time budget")
            continue
        rate = rep.attempt("train", what, lambda: train_rate(ctx, d, **dict(options)))
        strict_float32()
        if rate is None:
            continue
        rep.add("train", what + ("" if "epochs" in options else ", epoch 2"), f"{rate:,.0f} img/s")
        rep.ratio("train", "  ... / bare eager loop (float32)", rate / bare, target,
                  (rate / bare >= 3) if target else None)


def section_taps(ctx: dict, rep: Report) -> None:
    import reproduce.metric.bundles as B
    from reproduce.models.nets import ModelConfig, blocks_for_depth, build_model

    dev, n = ctx["dev"], ctx["samples"]
    strict_float32()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=g).to(dev)
    y = torch.randint(0, 10, (n,), generator=g).to(dev)
    kw = dict(num_classes=10, lr=1e-3, batch_size=64)
    for kind in ("residual", "plain"):
        torch.manual_seed(0)
        cfg = ModelConfig(kind, 10, 3, 32, blocks_for_depth(ctx["depth"]), width=ctx["width"])
        model = build_model(cfg).to(dev).eval()

        def forward() -> None:
            with torch.no_grad():
                model(x)

        repeats = 3 if ctx["quick"] else 7
        t_fwd = timed(forward, dev, repeats)
        t_taps = timed(lambda: B._measure_rows(model, x, y, **kw), dev, repeats)
        taps = len(B._measure_rows(model, x, y, **kw))
        rep.add("taps", f"{cfg.label} (width {ctx['width']:g}), N={n}: forward", f"{t_fwd * 1e3:.1f} ms")
        rep.ratio("taps", f"{cfg.label}: all {taps} taps / forward", t_taps / t_fwd, "<= 2", t_taps / t_fwd <= 2)
        if dev.type == "cuda":  # PyTorch's default TF32 convolutions, as in the measurement
            torch.backends.cudnn.allow_tf32 = True
            t_fwd32 = timed(forward, dev, repeats)
            t_taps32 = timed(lambda: B._measure_rows(model, x, y, **kw), dev, repeats)
            strict_float32()
            rep.ratio("taps", f"{cfg.label}, TF32 convolutions: taps / forward", t_taps32 / t_fwd32, "", None)
        del model


def _rows_agree(a: list[dict], b: list[dict]) -> int:
    """Taps whose rows differ (entropy to 1e-9 relative; everything else exactly)."""
    bad = 0 if len(a) == len(b) else abs(len(a) - len(b))
    for r, s in zip(a, b):
        same = {k: v for k, v in r.items() if k != "entropy"} == {k: v for k, v in s.items() if k != "entropy"}
        close = abs(r["entropy"] - s["entropy"]) <= 1e-9 * max(abs(r["entropy"]), 1e-300)
        bad += not (same and close)
    return bad


def section_agreement(ctx: dict, rep: Report) -> None:
    import reproduce.metric.bundles as B
    from reproduce.models.nets import ModelConfig, blocks_for_depth, build_model

    dev, n = ctx["dev"], ctx["samples"]
    if dev.type != "cuda":
        rep.add("agree", "CUDA vs CPU", "skipped: no CUDA device")
        return
    strict_float32()
    g = torch.Generator().manual_seed(1)
    kw = dict(num_classes=10, lr=1e-3, batch_size=64)

    def compare(model, x, y, what: str, **over) -> tuple[int, int]:
        opts = {**kw, **over}
        cpu = B._measure_rows(model.cpu(), x, y, **opts)
        model.to(dev)
        bad = _rows_agree(cpu, B._measure_rows(model, x, y, **opts))
        model.cpu()
        return len(cpu), bad

    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    real, real_bad = 0, 0
    for kind in ("residual", "plain"):
        torch.manual_seed(2)
        model = build_model(ModelConfig(kind, 10, 3, 32, blocks_for_depth(ctx["depth"]), width=ctx["width"]))
        taps, bad = compare(model, x, y, kind)
        real, real_bad = real + taps, real_bad + bad
    rep.mismatches += real_bad
    rep.add("agree", f"real taps (residual-{ctx['depth']} + plain-{ctx['depth']}, N={n}): mismatches",
            f"{real_bad} of {real}", "0", "ok" if real_bad == 0 else "MISMATCH")
    # planted cases
    planted, planted_bad = 0, 0
    protos = (torch.randperm(9 * 33, generator=g).reshape(9, 33) * 10).float()
    a = protos[torch.randint(0, 9, (300,), generator=g)] + torch.randint(0, 2, (300, 33), generator=g) * 1e-4
    yl = torch.randint(0, 5, (300,), generator=g)
    st = [B.bundle_stats(t, l, num_classes=5, lr=1e-3, batch_size=64, weight_amplitude=1.0)
          for t, l in ((a, yl), (a.to(dev), yl.to(dev)))]
    same = (st[0].bundle_ids.tolist() == st[1].bundle_ids.cpu().tolist() and st[0].num_bundles == st[1].num_bundles
            and abs(st[0].entropy - st[1].entropy) <= 1e-9 * max(st[0].entropy, 1e-300)
            and st[0].max_accuracy == st[1].max_accuracy)
    planted, planted_bad = planted + 1, planted_bad + (not same)
    torch.manual_seed(3)
    collapsed = build_model(ModelConfig("plain", 10, 3, 32, blocks_for_depth(20), width=ctx["width"]))
    with torch.no_grad():
        collapsed.layer2[0].conv2.weight.zero_()  # its output is the same for every input
    taps, bad = compare(collapsed, x, y, "collapsed")
    rows = B._measure_rows(collapsed.to(dev), x, y, **kw)
    collapsed.cpu()
    planted, planted_bad = planted + 1, planted_bad + (bad > 0 or rows[2]["num_bundles"] != 1)
    torch.manual_seed(4)
    residual = build_model(ModelConfig("residual", 10, 3, 32, blocks_for_depth(ctx["depth"]), width=ctx["width"]))
    dup = x[:8].repeat(n // 8, 1, 1, 1)  # 8 distinct images, each n/8 times: at most 8 bundles per tap
    taps, bad = compare(residual, dup, y, "duplicated")
    planted, planted_bad = planted + 1, planted_bad + (bad > 0)
    torch.manual_seed(5)
    plain = build_model(ModelConfig("plain", 10, 3, 32, blocks_for_depth(ctx["depth"]), width=ctx["width"]))
    same_x = x[:1].expand(n, -1, -1, -1).contiguous()  # one image n times: one bundle everywhere
    taps, bad = compare(plain, same_x, y, "identical", lr=1e-9)
    planted, planted_bad = planted + 1, planted_bad + (bad > 0)
    rep.mismatches += planted_bad
    rep.add("agree", "planted cases (clustered activations, collapsed block, duplicated and identical inputs)",
            f"{planted_bad} of {planted}", "0", "ok" if planted_bad == 0 else "MISMATCH")


def section_compile(ctx: dict, rep: Report) -> None:
    """torch.compile(mode="reduce-overhead") through train(), in a subprocess with a time limit."""
    left = ctx["deadline"] - time.perf_counter() - 5
    if left < 60:
        rep.add("compile", "train(device_data, compile='reduce-overhead')", "skipped: time budget")
        return
    cmd = [sys.executable, __file__, "--compile-child", str(ctx["root"]), "--device", ctx["dev"].type,
           "--train-images", str(ctx["train_images"])] + (["--quick"] if ctx["quick"] else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=left)
    except subprocess.TimeoutExpired:
        rep.add("compile", "train(device_data, compile='reduce-overhead')", f"timed out after {left:.0f} s")
        return
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"child exited {out.returncode}: {out.stderr[-2000:]}")
    rate = json.loads(lines[-1])["rate"]
    rep.add("compile", "train(device_data, compile='reduce-overhead'), epoch 2", f"{rate:,.0f} img/s")
    if "bare" in ctx:
        rep.ratio("compile", "train(reduce-overhead) / bare eager loop", rate / ctx["bare"], "", None)


def compile_child(args: argparse.Namespace) -> None:
    from reproduce.data.datasets import load_dataset

    ctx = make_context(args, Path(args.compile_child))
    rate = train_rate(ctx, load_dataset("cifar10", root=ctx["root"], verify_checksums=False), device_data=True,
                      compile="reduce-overhead")
    print(json.dumps({"rate": rate}), flush=True)


# --------------------------------------------------------------------------------------------
# main


def make_context(args: argparse.Namespace, root: Path) -> dict:
    from reproduce.data.datasets import load_dataset
    from reproduce.models.nets import ModelConfig, blocks_for_depth

    dev = torch.device(args.device)
    depth, width = (10, 1 / 16) if args.quick else (120, 1.0)
    return {"dev": dev, "root": root, "quick": args.quick, "depth": depth, "width": width,
            "samples": 64 if args.quick else 512, "train_images": args.train_images,
            "mcfg": ModelConfig("residual", 10, 3, 32, blocks_for_depth(depth), width=width),
            "data": load_dataset("cifar10", root=root, verify_checksums=False),
            "deadline": time.perf_counter() + args.budget, "reserve": 20.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=330.0, help="seconds for everything (default: %(default)s)")
    ap.add_argument("--train-images", type=int, default=10_000, help="synthetic training images")
    ap.add_argument("--device", default=None, help="cuda (default when present) or cpu (to check the script)")
    ap.add_argument("--quick", action="store_true", help="a small net and few samples (to check the script)")
    ap.add_argument("--skip", nargs="*", default=[], help="sections to skip: data train taps agree compile")
    ap.add_argument("--compile-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.compile_child:
        compile_child(args)
        return 0
    if args.device is None:
        if not torch.cuda.is_available():
            print("no CUDA device: nothing to measure")
            return 0
        args.device = "cuda"
    start = time.perf_counter()
    dev = torch.device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"torch {torch.__version__}, device {name}, budget {args.budget:.0f} s", flush=True)
    rep = Report()
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        root = Path(tmp)
        n_train = min(args.train_images, 1024) if args.quick else args.train_images
        args.train_images = n_train
        write_cifar(root, n_train, 256 if args.quick else 1000)
        ctx = make_context(args, root)
        ctx["deadline"] = start + args.budget
        print(f"synthetic CIFAR-10: {len(ctx['data'].train)} train / {len(ctx['data'].test)} test images "
              f"in {root}", flush=True)
        sections = [("data", section_data), ("train", section_training), ("taps", section_taps),
                    ("agree", section_agreement), ("compile", section_compile)]
        for key, fn in sections:
            if key in args.skip:
                continue
            if time.perf_counter() > ctx["deadline"] - ctx["reserve"] and key != "agree":
                rep.add(key, "section", "skipped: time budget")
                continue
            print(f"({key})", flush=True)
            t0 = time.perf_counter()
            try:
                fn(ctx, rep)
            except Exception as exc:  # noqa: BLE001 - report and go on with the next section
                traceback.print_exc()
                rep.failed += 1
                rep.add(key, "section FAILED", f"{type(exc).__name__}: {str(exc)[:160]}")
            finally:
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
            print(f"  ({key} took {time.perf_counter() - t0:.1f} s)", flush=True)
    print()
    print(rep.table())
    print(f"\ntotal {time.perf_counter() - start:.0f} s; metric/pipeline mismatches: {rep.mismatches}; "
          f"sections that failed: {rep.failed}")
    return 1 if rep.mismatches else 2 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
