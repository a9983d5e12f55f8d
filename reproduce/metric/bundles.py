"""Bundles and bundle entropy (``docs/method.md#bundles``).

For ``N`` samples with activations ``a_i`` (flattened, float32) at one layer, every sample gets

    t_i = w_max - (a_i * lr) * (1 / bs)            (float32, in this order)

and samples whose ``t`` are float-equal in every component form one bundle.
:func:`bundle_stats` computes the bundles, their count, the bundle entropy and the accuracy bound.

Choices the specification leaves open (written down here):

* Arithmetic: ``a`` is first cast to float32; ``lr``, ``1 / bs`` (the quotient taken in Python
  double precision) and ``w_max`` are each rounded to float32; the three operations run as separate
  float32 operations, exactly the order of the released TensorFlow code. Denormals follow torch's
  setting (``torch.set_flush_denormal``; off by default) -- TensorFlow flushes them on CPU, which
  only matters when ``w_max == 0`` and activations are below ~1e-38.
* Equality: ``+0.0`` and ``-0.0`` compare equal as floats; ``t`` never holds ``-0.0`` anyway
  (``w - x`` with ``w >= +0`` is ``+0`` whenever it is zero, and ``w_max`` is normalised to ``+0``),
  so grouping on the float32 *bit patterns* of ``t`` is exactly grouping on float equality. NaN
  cannot occur: non-finite activations are rejected; finite activations whose scaled value
  overflows to ``-inf`` are kept (``-inf == -inf``, as in the released code).
* Grouping algorithm (no N x N matrix, no Python loop over samples): ``t`` is computed a chunk of
  rows at a time into one small buffer and never held whole. Each row's bits, read as 64-bit lanes
  (pairs of float32 columns), get the hash ``sum_j lane_j * m_j mod 2^64`` (``m_j`` fixed random
  odd multipliers; exact wrapping integer arithmetic, so equal rows always get equal hashes). Rows
  are grouped by hash with :func:`torch.unique`, then every row that is not the first of its group
  is compared exactly (bit for bit, ``t`` recomputed) with that first row. Should two different
  rows share a hash (impossible for rows differing in one lane; about 2^-64 per pair otherwise),
  the exact but slower ``torch.unique(t_bits, dim=0)`` takes over. Extra memory: chunk-sized
  buffers plus a few length-N vectors (the fallback alone holds a float32 copy of ``t``).
* Bundle ids are numbered ``0..K-1`` by first appearance in sample order.
* Entropy uses the exact form ``H(b) = -sum_c p_c ln p_c`` in float64, computed as
  ``n_bc (ln|b| - ln n_bc)`` so that a label-pure bundle contributes exactly ``+0.0`` and
  ``H > 0`` iff some bundle is conflicting. The released code's ``ln(p_c + 1e-5)`` form, clamped
  at 0 (:func:`_bundle_entropy_released`), differs by at most ``1e-5`` per class present in a
  bundle, i.e. about 1e-4 for ten classes.

:func:`measure_model` measures every tap of a model (streaming: one tap's activation alive at a
time), :func:`measure_last_layer` only a^(L), and :class:`BundleCallback` does either after every
training epoch, storing plain-Python results in the epoch record.

This module also owns the rule that says which layers are *conflicting*
(:func:`layer_rows`, :func:`conflicting_layers`: a residual block by its branch tap, a plain block
by its output, an FNN layer by its hidden output) and the continuous **distance to bundling**
(:func:`distance_to_bundling`, this project's addition: how many float32 resolution steps separate
the closest pair of samples of different labels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from reproduce.data.datasets import MEASUREMENT_SAMPLES, measurement_samples
from reproduce.models.nets import eval_mode, model_device

__all__ = [
    "NonFiniteActivationError",
    "MAX_CLASSES",
    "BundleStats",
    "bundle_stats",
    "weight_amplitude",
    "measure_model",
    "measure_last_layer",
    "default_hook_taps",
    "BundleCallback",
    "bundle_callback",
    "bundles_frame",
    "layer_rows",
    "conflicting_layers",
    "hook_distances",
    "resolution_step",
    "distance_to_bundling",
    "TAP_COLUMNS",
]

#: columns of :func:`measure_model`'s table, in order
TAP_COLUMNS = ("tap", "layer", "role", "block", "stage", "num_bundles", "entropy", "max_accuracy", "conflicting")

#: seed of the fixed hash multipliers (any value works; fixed so that runs are reproducible)
_HASH_SEED = 0x5EED_B0D1
#: elements of one chunk of the scaling/hash pass (2 MiB of float32: about cache-sized on CPU)
_CPU_CHUNK_ELEMENTS = 1 << 19
_CUDA_CHUNK_ELEMENTS = 1 << 26
#: activation modules that produce outputs, not hidden representations (never default taps)
_OUTPUT_ACTIVATIONS = (nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.Softmax2d)


#: the largest number of classes (bundle-label pairs are counted in int64: ``N * num_classes`` must fit)
MAX_CLASSES = 2**31


class NonFiniteActivationError(ValueError):
    """Activations hold NaN or inf: bundles need finite activations (a diverged network gives them)."""


@dataclass(frozen=True, eq=False)
class BundleStats:
    """Bundles of one layer.

    ``bundle_ids[i]`` is sample ``i``'s bundle (``0..num_bundles-1``, by first appearance);
    ``bundle_sizes[b]`` is ``|b|``; ``entropy`` the bundle entropy (nats); ``max_accuracy`` the
    bound ``(1/N) sum_b max_c n_bc`` on the training accuracy reachable when this is a^(L);
    ``num_conflicting_bundles`` counts bundles holding more than one label.
    """

    num_bundles: int
    entropy: float
    max_accuracy: float
    num_conflicting_bundles: int
    bundle_ids: torch.Tensor
    bundle_sizes: torch.Tensor

    @property
    def conflicting(self) -> bool:
        """True iff some bundle holds more than one label (``entropy > 0``)."""
        return self.entropy > 0.0

    @property
    def num_samples(self) -> int:
        return int(self.bundle_ids.numel())


# --------------------------------------------------------------------------- validation


def _check_scalars(*, num_classes: Any, lr: Any, batch_size: Any, weight_amplitude: Any) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    if num_classes > MAX_CLASSES:
        raise ValueError(f"num_classes must be at most {MAX_CLASSES} (2**31), got {num_classes!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be an integer > 0, got {batch_size!r}")
    try:
        lr_f = float(lr)
        w_f = float(weight_amplitude)
    except (TypeError, ValueError):
        raise ValueError(f"lr and weight_amplitude must be real numbers, got {lr!r}, {weight_amplitude!r}") from None
    if not (math.isfinite(lr_f) and lr_f > 0):
        raise ValueError(f"lr (learning rate) must be finite and > 0, got {lr!r}")
    if not (math.isfinite(w_f) and w_f >= 0):
        raise ValueError(f"weight_amplitude (w_max) must be finite and >= 0, got {weight_amplitude!r}")
    # the metric computes in float32: constants that round to 0 or inf there give a degenerate metric
    with np.errstate(over="ignore", under="ignore"):
        lr32, inv_bs32, w32 = np.float32(lr_f), np.float32(1.0 / int(batch_size)), np.float32(w_f)
    if not (np.isfinite(lr32) and lr32 > 0):
        raise ValueError(f"lr = {lr!r} rounds to {float(lr32)!r} in float32, where the metric computes; "
                         f"it must be a positive float32 number (about 1.4e-45 .. 3.4e38)")
    if not inv_bs32 > 0:
        raise ValueError(f"batch_size = {batch_size!r}: 1 / batch_size rounds to 0 in float32, where the metric "
                         f"computes; it must be below about 1e45")
    if not np.isfinite(w32):
        raise ValueError(f"weight_amplitude (w_max) = {weight_amplitude!r} rounds to inf in float32, where the "
                         f"metric computes; it must be below about 3.4e38")


def _check_activations(activations: Any, n: int | None = None, where: str = "activations") -> int:
    """Check an activation tensor [N, ...] (against ``n`` samples if given); return N."""
    if not isinstance(activations, torch.Tensor):
        raise ValueError(f"{where} must be a torch.Tensor, got {type(activations).__name__}")
    if activations.dim() < 1:
        raise ValueError(f"{where} must have at least 1 dim (samples first), got a {activations.dim()}-dim tensor")
    if activations.is_complex() or activations.dtype == torch.bool:
        raise ValueError(f"{where} must be real numbers, got dtype {activations.dtype}")
    if activations.device.type == "meta":
        raise ValueError(f"{where} are on the meta device and hold no values; pass real tensors")
    m = activations.shape[0]
    if m == 0:
        raise ValueError(f"empty sample set: {where} hold N = 0 samples; need N >= 1")
    if activations[0].numel() == 0:
        raise ValueError(f"{where} of shape {tuple(activations.shape)} hold 0 values per sample: nothing to "
                         f"compare; need at least 1 value per sample")
    if n is not None and m != n:
        raise ValueError(f"{where} hold N = {m} samples but labels hold {n}; the counts must match")
    return m


def _check_labels(labels: Any, num_classes: int) -> int:
    """Check integer labels [N] in ``0..num_classes-1``; return N."""
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if labels.dim() != 1:
        raise ValueError(f"labels must be 1-dim [N], got shape {tuple(labels.shape)}")
    if labels.shape[0] == 0:
        raise ValueError("empty sample set: labels hold N = 0 samples; need N >= 1")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        raise ValueError(f"label {bad} outside the valid range 0..{num_classes - 1} (num_classes = {num_classes})")
    return int(labels.shape[0])


def _check_inputs(activations: Any, labels: Any, num_classes: int) -> int:
    n = _check_activations(activations)
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dim() >= 1 and labels.shape[0] != n:
        raise ValueError(f"activations hold N = {n} samples but labels hold {labels.shape[0]}; the counts must match")
    return _check_labels(labels, num_classes)


# --------------------------------------------------------------------------- grouping


def _chunk_rows(d: int, device: torch.device) -> int:
    budget = _CUDA_CHUNK_ELEMENTS if device.type == "cuda" else _CPU_CHUNK_ELEMENTS
    return max(1, budget // max(d, 1))


def _hash_multipliers(lanes: int, device: torch.device) -> torch.Tensor:
    """Fixed random odd int64 multipliers, one per 64-bit lane (pair of float32 columns)."""
    g = torch.Generator().manual_seed(_HASH_SEED)
    mult = torch.randint(-(2**62), 2**62, (lanes,), generator=g, dtype=torch.int64) | 1
    if device.type == "cuda":  # from pinned memory: no wait for the work queued before it
        return mult.pin_memory().to(device, non_blocking=True)
    return mult.to(device)


def _row_hash(lanes: torch.Tensor, mult: torch.Tensor) -> torch.Tensor:
    """``sum_j lanes_j * mult_j`` mod 2^64 per row: exact integer arithmetic, so the same row
    content gives the same hash whatever the summation order (int64 mv on CPU, elementwise on GPU)."""
    if lanes.device.type == "cpu":
        return lanes @ mult
    return (lanes * mult).sum(1)


def _first_appearance(inverse: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Renumber group ids ``inverse`` (0..k-1, any order) by first appearance; also each group's first row."""
    n = inverse.numel()
    dev = inverse.device
    idx = torch.arange(n, device=dev)
    first = torch.full((k,), n, dtype=torch.int64, device=dev).scatter_reduce_(0, inverse, idx, "amin")
    order = torch.argsort(first)
    rank = torch.empty(k, dtype=torch.int64, device=dev)
    rank[order] = torch.arange(k, device=dev)
    return rank[inverse], first


def _exact_inverse(t_bits: torch.Tensor) -> torch.Tensor:
    """Group ids by exact comparison of whole rows of ``t`` bits (the slow path, after a collision)."""
    return torch.unique(t_bits, dim=0, return_inverse=True)[1]


class _Bundler:
    """Computes bundles of activations for fixed labels and scaling constants.

    Built once per measurement (``bundle_stats`` call, or one :func:`measure_model` pass over all
    taps) so that validation of the labels, the float32 constants and the hash multipliers are
    not redone per tap. Holds no activations.
    """

    def __init__(self, labels: torch.Tensor, num_classes: int, lr: float, batch_size: int, w_max: float):
        dev = labels.device
        self.labels = labels.to(torch.int64)
        self.n = int(labels.shape[0])
        self.num_classes = int(num_classes)

        def f32(v: float) -> torch.Tensor:
            return torch.tensor(v, dtype=torch.float32, device=dev)

        self.lr, self.inv_bs = f32(lr), f32(1.0 / batch_size)
        self.w_max = f32(w_max + 0.0)  # + 0.0 turns -0.0 into +0.0
        self._mult: dict[int, torch.Tensor] = {}

    # -- t = w_max - (a * lr) * (1 / bs)

    def scale(self, a: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out[:] = t(a)`` for rows ``a`` [r, D]; separate float32 operations, in the released order."""
        if a.dtype == torch.float32:
            torch.mul(a, self.lr, out=out)
        else:
            out.copy_(a)  # cast to float32 first
            out.mul_(self.lr)
        out.mul_(self.inv_bs)
        return torch.sub(self.w_max, out, out=out)

    def multipliers(self, lanes: int) -> torch.Tensor:
        if lanes not in self._mult:
            self._mult[lanes] = _hash_multipliers(lanes, self.labels.device)
        return self._mult[lanes]

    # -- grouping

    def hash_rows(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row hashes of ``t`` [N] and a 0-dim flag: some chunk of ``t`` summed to a non-finite value.

        Streams over row chunks through one chunk-sized buffer (padded to an even width so that
        its rows read as int64 lanes; the pad column is 0), so ``t`` is never held whole.
        """
        n, d = a.shape
        dev = a.device
        rows = min(n, _chunk_rows(d, dev))
        width = d + (d & 1)
        buf = torch.empty((rows, width), dtype=torch.float32, device=dev)
        if width != d:
            buf[:, d].zero_()
        mult = self.multipliers(width // 2)
        if rows == n:
            t = self.scale(a, buf[:, :d])
            return _row_hash(buf.view(torch.int64), mult), ~torch.isfinite(t.sum())
        hashes = torch.empty(n, dtype=torch.int64, device=dev)
        sums = torch.empty((n + rows - 1) // rows, dtype=torch.float32, device=dev)
        for c, s in enumerate(range(0, n, rows)):
            e = min(n, s + rows)
            tc = self.scale(a[s:e], buf[: e - s, :d])
            sums[c] = tc.sum()
            hashes[s:e] = _row_hash(buf[: e - s].view(torch.int64), mult)
        return hashes, ~torch.isfinite(sums).all()

    def rows_match_representatives(self, a: torch.Tensor, inverse: torch.Tensor, first: torch.Tensor) -> bool:
        """Exact check: is ``t`` of every row bit-equal to ``t`` of the first row of its hash group?

        ``inverse`` gives each row's group, ``first`` each group's first row. ``t`` is recomputed
        (deterministically) for the first rows of groups of two or more (at most N/2 rows) and,
        a chunk at a time, for every other row.
        """
        n, d = a.shape
        dev = a.device
        todo = torch.nonzero(first[inverse] != torch.arange(n, device=dev)).flatten()
        if todo.numel() == 0:
            return True
        shared = torch.unique(inverse[todo])
        slot = torch.full((first.numel(),), -1, dtype=torch.int64, device=dev)
        slot[shared] = torch.arange(shared.numel(), device=dev)
        reps = self.scale(torch.index_select(a, 0, first[shared]),
                          torch.empty((shared.numel(), d), dtype=torch.float32, device=dev))
        lane = torch.int64 if d % 2 == 0 else torch.int32  # compare bits, 64 at a time where possible
        rows = min(todo.numel(), _chunk_rows(d, dev))
        buf = torch.empty((2, rows, d), dtype=torch.float32, device=dev)
        for s in range(0, todo.numel(), rows):
            r = todo[s:s + rows]
            m = r.numel()
            mine = self.scale(torch.index_select(a, 0, r), buf[0, :m])
            theirs = torch.index_select(reps, 0, slot[inverse[r]], out=buf[1, :m])
            if not torch.equal(mine.view(lane), theirs.view(lane)):
                return False
        return True

    def group(self, a: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Bundle id of every row of ``a`` [N, D] (first-appearance order) and the bundle count."""
        hashes, nonfinite = self.hash_rows(a)
        _, inverse = torch.unique(hashes, return_inverse=True)
        del hashes
        k = int(inverse.max()) + 1
        if bool(nonfinite) and not bool(torch.isfinite(a).all()):
            raise NonFiniteActivationError("activations hold non-finite values (NaN or inf); bundles need finite activations")
        if k == self.n:  # every row alone: nothing to verify, ids are the sample order
            return torch.arange(self.n, device=a.device), k
        ids, first = _first_appearance(inverse, k)
        if not self.rows_match_representatives(a, inverse, first):  # a hash collision
            t = self.scale(a, torch.empty(a.shape, dtype=torch.float32, device=a.device))
            inverse = _exact_inverse(t.view(torch.int32))
            del t
            k = int(inverse.max()) + 1
            ids, _ = _first_appearance(inverse, k)
        return ids, k

    # -- statistics

    def stats(self, activations: torch.Tensor) -> BundleStats:
        """:class:`BundleStats` of ``activations`` [N, ...] (shape already checked)."""
        ids, k = self.group(activations.detach().reshape(self.n, -1))
        return self.stats_of(ids, k)

    def stats_of(self, ids: torch.Tensor, k: int) -> BundleStats:
        """:class:`BundleStats` of the bundle ids ``ids`` (``0..k-1`` by first appearance)."""
        n = self.n
        if k == n:
            return BundleStats(n, 0.0, 1.0, 0, ids, torch.ones(n, dtype=torch.int64, device=ids.device))
        sizes = torch.bincount(ids, minlength=k)
        bundle_of, counts = _label_counts(ids, self.labels, self.num_classes)
        c64 = counts.to(torch.float64)
        s64 = sizes[bundle_of].to(torch.float64)
        entropy = float((c64 * (torch.log(s64) - torch.log(c64))).sum()) / n
        best = torch.zeros(k, dtype=torch.int64, device=ids.device).scatter_reduce_(0, bundle_of, counts, "amax")
        max_accuracy = float(best.sum()) / n
        conflicting = int((torch.bincount(bundle_of, minlength=k) > 1).sum())
        return BundleStats(k, entropy, max_accuracy, conflicting, ids, sizes)


# --------------------------------------------------------------------------- statistics


def _label_counts(ids: torch.Tensor, labels: torch.Tensor, num_classes: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse ``n_{b,c}``: (bundle of each non-zero count, the count)."""
    pairs = ids * num_classes + labels.to(device=ids.device, dtype=torch.int64)
    uniq, counts = torch.unique(pairs, return_counts=True)
    return torch.div(uniq, num_classes, rounding_mode="floor"), counts


def _bundle_entropy_released(ids: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """The released code's form: ``H(b) = max(0, -sum_c p_c ln(p_c + 1e-5))``, weighted by ``|b|/N``.

    A reference for tests only (dense ``K x C`` table, float64).
    """
    ids = ids.cpu().to(torch.int64)
    labels = labels.cpu().to(torch.int64)
    k = int(ids.max()) + 1
    table = torch.zeros((k, num_classes), dtype=torch.float64)
    table.index_put_((ids, labels), torch.ones(ids.numel(), dtype=torch.float64), accumulate=True)
    sizes = table.sum(1)
    p = table / sizes[:, None]
    h_b = (-(p * torch.log(p + 1e-5)).sum(1)).clamp_min(0.0)
    return float((sizes * h_b).sum() / ids.numel())


def bundle_stats(
    activations: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_classes: int,
    lr: float,
    batch_size: int,
    weight_amplitude: float,
) -> BundleStats:
    """Bundles of the samples' ``activations`` [N, ...] with integer ``labels`` [N].

    ``lr`` and ``batch_size`` are the training learning rate and batch size, ``weight_amplitude``
    the model's ``w_max`` (:func:`weight_amplitude`). Runs on the activations' device (the labels
    are moved there). Raises ValueError for empty, mismatched, non-finite or out-of-range input.
    """
    _check_scalars(num_classes=num_classes, lr=lr, batch_size=batch_size, weight_amplitude=weight_amplitude)
    _check_inputs(activations, labels, int(num_classes))
    with torch.no_grad():
        bundler = _Bundler(labels.to(activations.device), int(num_classes), float(lr), int(batch_size),
                           float(weight_amplitude))
        return bundler.stats(activations)


# --------------------------------------------------------------------------- models


def weight_amplitude(model: nn.Module) -> float:
    """``w_max``: the largest ``|p|`` over all trainable parameters, as a float32 value (0.0 if none)."""
    maxima = [p.detach().abs().max().to(torch.float32) for p in model.parameters()
              if p.requires_grad and p.numel() > 0]
    if not maxima:
        return 0.0
    # one device sync for the whole model instead of one per parameter tensor
    devices = {m.device for m in maxima}
    if len(devices) > 1:
        maxima = [m.cpu() for m in maxima]
    return float(np.float32(float(torch.stack(maxima).max())))


def _is_activation_leaf(module: nn.Module) -> bool:
    return type(module).__module__ == "torch.nn.modules.activation" and not isinstance(module, _OUTPUT_ACTIVATIONS)


def default_hook_taps(model: nn.Module) -> list[str]:
    """Default taps of a model without ``iter_taps``.

    Every leaf activation module (ReLU, GELU, Tanh, ... from ``torch.nn``; softmax-type output
    modules excluded), in registration order; if the model has none, every leaf module except the
    last one (taken to be the output layer, as the logits are not tapped); if that leaves nothing,
    every leaf module.
    """
    leaves = [(name, m) for name, m in model.named_modules() if not any(True for _ in m.children())]
    acts = [name for name, m in leaves if _is_activation_leaf(m)]
    if acts:
        return acts
    names = [name for name, _ in leaves]
    return names[:-1] or names


def _row(name: str, layer: int, role: str, block: Any, stage: Any, st: BundleStats) -> dict[str, Any]:
    return {
        "tap": str(name),
        "layer": int(layer),
        "role": str(role),
        "block": None if block is None else int(block),
        "stage": None if stage is None else int(stage),
        "num_bundles": int(st.num_bundles),
        "entropy": float(st.entropy),
        "max_accuracy": float(st.max_accuracy),
        "conflicting": bool(st.conflicting),
    }


def _prepare(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, lr: float,
             batch_size: int) -> tuple[_Bundler, torch.Tensor]:
    """Validate, move ``x``/``y`` to the model's device, and build the bundler (``w_max`` of ``model``)."""
    _check_scalars(num_classes=num_classes, lr=lr, batch_size=batch_size, weight_amplitude=0.0)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
    n = _check_labels(y, int(num_classes))
    if x.dim() < 1 or x.shape[0] != n:
        raise ValueError(f"x holds {x.shape[0] if x.dim() else 0} samples but y holds {n}; the counts must match")
    dev = model_device(model)
    bundler = _Bundler(y.to(dev), int(num_classes), float(lr), int(batch_size), weight_amplitude(model))
    return bundler, x.to(dev)


def _measure_rows(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, lr: float,
                  batch_size: int, taps: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Plain-Python rows of :func:`measure_model` (JSON-serialisable)."""
    bundler, x = _prepare(model, x, y, num_classes=num_classes, lr=lr, batch_size=batch_size)
    if isinstance(taps, str):
        raise ValueError(f"taps must be a list of tap names, got the string {taps!r}; did you mean [{taps!r}]?")
    wanted = None if taps is None else list(taps)
    with eval_mode(model):
        if hasattr(model, "iter_taps"):
            return _tap_rows(model, x, bundler, wanted)
        return _hook_rows(model, x, bundler, wanted)


def _tap_rows(model: nn.Module, x: torch.Tensor, bundler: _Bundler, wanted: list[str] | None) -> list[dict[str, Any]]:
    """The rows of a model with ``iter_taps`` (the package's nets): its taps, or those ``wanted``."""
    rows: list[dict[str, Any]] = []
    seen: list[str] = []
    for tap in model.iter_taps(x):
        seen.append(tap.name)
        if wanted is None or tap.name in wanted:
            _check_activations(tap.activation, bundler.n, f"tap {tap.name!r}")
            rows.append(_row(tap.name, tap.index, tap.role, tap.block, tap.stage, bundler.stats(tap.activation)))
        del tap
    missing = [t for t in wanted or () if t not in seen]
    if missing:
        raise ValueError(f"unknown taps {missing}; this model's taps are {seen}")
    return rows


def _hook_rows(model: nn.Module, x: torch.Tensor, bundler: _Bundler, wanted: list[str] | None) -> list[dict[str, Any]]:
    """The rows of any other module: every call of the modules ``wanted`` (default
    :func:`default_hook_taps`), through forward hooks, in call order."""
    names = default_hook_taps(model) if wanted is None else wanted
    modules = dict(model.named_modules())
    missing = [t for t in names if t not in modules]
    if missing:
        raise ValueError(f"unknown taps {missing}; valid module names are {[m for m in modules if m]}")
    if not names:
        raise ValueError("no taps to measure: pass module names in `taps`")
    rows: list[dict[str, Any]] = []
    calls: dict[str, int] = {}

    def make_hook(name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            out = output[0] if isinstance(output, (tuple, list)) and output else output
            if not isinstance(out, torch.Tensor):
                raise ValueError(f"tap {name!r} ({type(module).__name__}) did not output a tensor")
            k = calls.get(name, 0) + 1
            calls[name] = k
            label = name if k == 1 else f"{name}#{k}"
            _check_activations(out, bundler.n, f"tap {label!r}")
            rows.append(_row(label, len(rows), type(module).__name__, None, None, bundler.stats(out)))
        return hook

    handles = [modules[name].register_forward_hook(make_hook(name)) for name in dict.fromkeys(names)]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return rows


def measure_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, lr: float,
                  batch_size: int, taps: Sequence[str] | None = None) -> pd.DataFrame:
    """Bundle statistics of every tap of ``model`` on samples ``x`` with labels ``y``.

    One row per tap, columns :data:`TAP_COLUMNS`. Models with ``iter_taps`` (this package's) are
    measured at the taps of the method notes (``docs/method.md#taps``); ``taps`` may then select tap names. Any other module is
    measured through forward hooks on the modules named in ``taps`` (default
    :func:`default_hook_taps`); a module called several times gives one row per call (``name#2``,
    ...). Each tap's statistics are computed as soon as it is produced and its activation dropped.
    Runs under :func:`reproduce.models.eval_mode`.
    """
    rows = _measure_rows(model, x, y, num_classes=num_classes, lr=lr, batch_size=batch_size, taps=taps)
    df = pd.DataFrame(rows, columns=list(TAP_COLUMNS))
    for col in ("block", "stage"):
        df[col] = df[col].astype("Int64")
    return df


def measure_last_layer(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, lr: float,
                       batch_size: int) -> BundleStats:
    """Bundle statistics of a^(L), the last tap: ``model.features(x)`` for this package's models
    (and any model with ``iter_taps`` and ``features``), the last ``iter_taps`` tap for a model
    without ``features``, else the output of the last default hook
    tap (:func:`default_hook_taps`)."""
    bundler, x = _prepare(model, x, y, num_classes=num_classes, lr=lr, batch_size=batch_size)

    def stats(a: Any, where: str) -> BundleStats:
        _check_activations(a, bundler.n, where)
        return bundler.stats(a)

    with eval_mode(model):
        if hasattr(model, "iter_taps") and hasattr(model, "features"):
            return stats(model.features(x), "features")
        if hasattr(model, "iter_taps"):
            last = None
            for tap in model.iter_taps(x):
                last = tap.activation
                del tap
            if last is None:
                raise ValueError(f"{type(model).__name__}.iter_taps yielded no tap")
            return stats(last, "last tap")
        names = default_hook_taps(model)
        if not names:
            raise ValueError(f"{type(model).__name__} has no module to tap")
        kept: list[torch.Tensor] = []

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            out = output[0] if isinstance(output, (tuple, list)) and output else output
            kept[:] = [out]

        handle = dict(model.named_modules())[names[-1]].register_forward_hook(hook)
        try:
            model(x)
        finally:
            handle.remove()
        if not kept or not isinstance(kept[0], torch.Tensor):
            raise ValueError(f"tap {names[-1]!r} produced no tensor")
        return stats(kept[0], f"tap {names[-1]!r}")


# --------------------------------------------------------------------------- training


class BundleCallback:
    """Training callback ``callback(model, epoch, record)``: measures bundles after every epoch.

    Measures on ``x``, ``y`` (a fixed set), or, with ``draw`` given, on ``draw(epoch)``: a fresh
    sample batch at every measurement (:func:`bundle_callback`). Adds to ``record`` (plain
    Python, JSON-serialisable): ``bundles`` (with ``every_tap``: one dict per tap with the keys of
    :data:`TAP_COLUMNS`; without: only a^(L)'s, tap name ``a_L``), ``a_L_entropy``,
    ``a_L_num_bundles``, ``a_L_max_accuracy``, and ``epoch`` if missing.
    """

    def __init__(self, x: torch.Tensor | None, y: torch.Tensor | None, *, num_classes: int, lr: float,
                 batch_size: int, every_tap: bool = True,
                 draw: Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None = None):
        _check_scalars(num_classes=num_classes, lr=lr, batch_size=batch_size, weight_amplitude=0.0)
        if draw is None and (not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor)
                             or x.shape[:1] != y.shape[:1]):
            raise ValueError("x and y must be tensors with the same number of samples")
        self.x, self.y, self.draw = x, y, draw
        self.num_classes, self.lr, self.batch_size = int(num_classes), float(lr), int(batch_size)
        self.every_tap = bool(every_tap)

    def samples(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The samples measured at ``epoch``."""
        return self.draw(int(epoch)) if self.draw is not None else (self.x, self.y)

    def __call__(self, model: nn.Module, epoch: int, record: dict) -> None:
        kw = dict(num_classes=self.num_classes, lr=self.lr, batch_size=self.batch_size)
        x, y = self.samples(epoch)
        if self.every_tap:
            rows = _measure_rows(model, x, y, **kw)
            last = rows[-1]
            a_l = (last["entropy"], last["num_bundles"], last["max_accuracy"])
        else:
            st = measure_last_layer(model, x, y, **kw)
            rows = [_row("a_L", 0, "a_L", None, None, st)]
            a_l = (st.entropy, st.num_bundles, st.max_accuracy)
        record.setdefault("epoch", int(epoch))
        record["bundles"] = rows
        record["a_L_entropy"], record["a_L_num_bundles"], record["a_L_max_accuracy"] = a_l


def bundle_callback(data: Any, spec: Any, *, sample_size: int, seed: int, every_tap: bool = True,
                    samples: str = "fresh", augment: bool = True) -> BundleCallback:
    """The :class:`BundleCallback` a run declares (:class:`reproduce.training.runs.Hook`), with the run's
    learning rate and batch size, measuring ``min(sample_size, training set)`` samples:

    * ``samples="fresh"`` (the default: the released behaviour; the presets pass ``Scale.measurement``): a
      fresh seeded training batch at every measurement, ``measurement_samples(data, n, seed,
      draw=epoch)``;
    * ``samples="fixed"``: one set for the whole run, ``measurement_samples(data, n, seed)``.

    ``augment`` (fresh batches only): False reads the batch without the training augmentation, as
    the released evaluate.py and lesion.py measure (the studies declare it); True, the default of
    runs declared before the argument existed (rounds 1-3), reads it augmented.
    """
    if samples not in MEASUREMENT_SAMPLES:
        raise ValueError(f"unknown samples {samples!r}; valid choices are {', '.join(MEASUREMENT_SAMPLES)}")
    n = min(int(sample_size), len(data.train_eval))
    kw = dict(num_classes=data.num_classes, lr=spec.train.lr, batch_size=spec.train.batch_size, every_tap=every_tap)
    if samples == "fresh":
        return BundleCallback(None, None, draw=lambda epoch: measurement_samples(data, n, seed, draw=epoch,
                                                                             augment=augment), **kw)
    x, y = measurement_samples(data, n, seed)
    return BundleCallback(x, y, **kw)


def bundles_frame(history: Iterable[dict]) -> pd.DataFrame:
    """Long table of the ``bundles`` entries of a run history: one row per (epoch, tap).

    ``epoch`` comes from each record's ``epoch`` key (its position in ``history`` if absent);
    records without ``bundles`` (e.g. a diverged epoch) are skipped.
    """
    rows = []
    for i, record in enumerate(history):
        for b in record.get("bundles") or ():
            rows.append({"epoch": record.get("epoch", i), **b})
    df = pd.DataFrame(rows, columns=["epoch", *TAP_COLUMNS])
    for col in ("block", "stage"):
        df[col] = df[col].astype("Int64")
    return df


# --------------------------------------------------------------------------- which layers conflict


def _deciding_role(rows: Sequence[dict]) -> str | None:
    roles = {r.get("role") for r in rows}
    for role in ("branch", "output", "hidden"):
        if role in roles:
            return role
    return None


def layer_rows(rows: Sequence[dict] | pd.DataFrame) -> list[dict]:
    """The tap rows (of :func:`measure_model`, or an epoch record's ``bundles``) that decide whether
    each layer is conflicting, in network order.

    The rule of the method notes (``docs/method.md#taps``): a residual net's blocks are judged by
    their branch taps (the rows hold ``branch`` taps), a plain net's blocks by their outputs, an
    FNN's layers by their hidden outputs; a net with no block has only its stem tap, which is
    returned alone.
    """
    if isinstance(rows, pd.DataFrame):
        rows = rows.to_dict("records")
    role = _deciding_role(rows)
    return [r for r in rows if role is None or r.get("role") == role]


def conflicting_layers(rows: Sequence[dict] | pd.DataFrame) -> frozenset[str]:
    """Tap names of the conflicting layers (:func:`layer_rows` with entropy > 0)."""
    return frozenset(str(r["tap"]) for r in layer_rows(rows) if float(r["entropy"]) > 0)


# --------------------------------------------------------------------------- distance to bundling


def resolution_step(weight_amplitude: float) -> float:
    """One float32 resolution step at ``w_max``: ``numpy.spacing(float32(w_max))``."""
    w = float(weight_amplitude)
    if not (math.isfinite(w) and w >= 0):
        raise ValueError(f"weight_amplitude (w_max) must be finite and >= 0, got {weight_amplitude!r}")
    return float(np.spacing(np.float32(w)))


def distance_to_bundling(activations: torch.Tensor, *, lr: float, batch_size: int, weight_amplitude: float,
                         labels: torch.Tensor | None = None, chunk_elements: int = 1 << 22) -> float:
    """Smallest pairwise max-norm distance of ``activations`` [N, ...], in resolution steps.

    ``min_{i<j} max_c |a_ic - a_jc| * lr / batch_size / resolution_step(weight_amplitude)``, over
    pairs with different ``labels`` when labels are given (only such a pair can form a conflicting
    bundle), else over all pairs; ``inf`` when no pair qualifies. A distance well below 1 means the
    pair is about to fall into one bundle. Pairwise differences are taken in float64 (exact for
    float32 activations) by ``torch.cdist`` with ``p = inf``, ``chunk_elements``
    distances at a time. (This project's addition, ``docs/method.md#distance``.)
    """
    if not isinstance(activations, torch.Tensor) or activations.dim() < 1:
        raise ValueError("activations must be a tensor [N, ...] with samples first")
    if isinstance(batch_size, bool) or int(batch_size) < 1 or not float(lr) > 0:
        raise ValueError(f"lr must be > 0 and batch_size >= 1, got {lr!r}, {batch_size!r}")
    step = resolution_step(weight_amplitude)
    n = activations.shape[0]
    a = activations.detach().reshape(n, -1).to(torch.float64)
    if not bool(torch.isfinite(a).all()):
        raise ValueError("activations hold non-finite values; the distance needs finite activations")
    if labels is not None:
        labels = torch.as_tensor(labels).reshape(-1).to(a.device)
        if labels.numel() != n:
            raise ValueError(f"activations hold N = {n} samples but labels hold {labels.numel()}")
    rows = max(1, int(chunk_elements) // max(1, n))  # a chunk holds rows x N distances
    best = math.inf
    for s in range(0, n, rows):
        e = min(n, s + rows)
        # Chebyshev distances of the chunk's rows to all rows; exact: the float32 values differ exactly in float64
        d = torch.cdist(a[s:e], a, p=math.inf) if a.shape[1] else torch.zeros(e - s, n, dtype=a.dtype)
        idx = torch.arange(s, e, device=a.device)[:, None]
        mask = idx < torch.arange(n, device=a.device)[None, :]  # each pair once, i < j
        if labels is not None:
            mask &= labels[s:e, None] != labels[None, :]
        if bool(mask.any()):
            best = min(best, float(d[mask].min()))
    if math.isinf(best):
        return math.inf
    return best * float(lr) / int(batch_size) / step


def hook_distances(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, *, lr: float, batch_size: int,
                   taps: Sequence[str] | None = None) -> list[float]:
    """:func:`distance_to_bundling` of the output of every call of the modules ``taps`` (default
    :func:`default_hook_taps`) in one eval/no_grad forward of ``x``, in call order (the order of
    :func:`measure_model`'s rows for such a model), at the model's ``w_max``."""
    from reproduce.models.nets import eval_mode

    names = list(default_hook_taps(model) if taps is None else taps)
    w_max = weight_amplitude(model)
    out: list[float] = []

    def hook(_module: nn.Module, _args: Any, output: torch.Tensor) -> None:
        out.append(distance_to_bundling(output, labels=labels, lr=lr, batch_size=batch_size, weight_amplitude=w_max))

    handles = [model.get_submodule(name).register_forward_hook(hook) for name in names]
    try:
        with eval_mode(model), torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return out
