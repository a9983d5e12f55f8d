"""Efficiency of a model: parameters, size, peak activation memory and inference time.

The auto-tune table (claim 5) compares the found networks with fixed-depth ones by "memory" and
"inference time"; the paper leaves the exact measures open, so they are defined here:

* **parameters** -- number of parameters (trainable or not) of the model.
* **model size** -- bytes of all parameters plus all buffers (e.g. batch-norm running statistics),
  reported in MB = 2**20 bytes (MiB).
* **peak activation memory** -- one forward pass of a batch of ``batch_size`` inputs in eval mode
  under ``torch.no_grad()``: the maximum, over the sequence of ATen operations the forward runs, of
  the total bytes of the *distinct storages* of the live tensors those operations produced. A
  storage is counted once however many views share it, from the operation that creates it until
  the last tensor referring to it is freed; an in-place operation adds nothing. Not counted: the
  input batch, parameters and buffers (and views of them), and scratch memory an operator uses
  internally without returning it (e.g. convolution workspaces). The number is exact (computed
  from tensor sizes, so the same on every device) and is taken right after each operation has
  produced its outputs, when its inputs are still alive.
* **multiply-accumulates (MACs) per image** -- the multiply-accumulate operations of the
  convolutions (``nn.Conv1d/2d/3d``) and linear layers (``nn.Linear``) that one forward of one image
  runs: a convolution producing ``N`` output elements costs ``N * (in_channels / groups) * prod(kernel)``,
  a linear layer producing ``N`` outputs costs ``N * in_features`` (any other matrix product, e.g.
  attention's, its multiply-adds too). Batch norm, activations, pooling, additions and biases are
  not counted. The number follows from the architecture and the input size alone (torch's
  ``FlopCounterMode`` counts it from the shapes of a forward's operations: two FLOPs per
  multiply-accumulate), so it is the same on every machine: a deterministic stand-in for
  inference cost, unlike the latency below.
* **CUDA peak** (CUDA models only) -- ``torch.cuda.max_memory_allocated`` during the same kind of
  forward minus the memory allocated before it: the allocator's view, including workspaces and
  the caching allocator's rounding.
* **inference time** -- seconds per forward pass of one batch (eval mode, ``no_grad``) on the
  model's current device: the median of ``repeats`` timed runs after ``warmup`` untimed ones, with
  CUDA synchronised around each run. :func:`inference_times` times several models round-robin
  (one run of each in turn), so that a change of machine load hits all of them alike.
"""

from __future__ import annotations

import statistics
import time
import weakref
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from reproduce.models.nets import eval_mode, model_device

__all__ = [
    "MB",
    "count_all_parameters",
    "model_bytes",
    "peak_activation_bytes",
    "multiply_accumulates",
    "multiply_accumulates_of",
    "cuda_peak_bytes",
    "inference_time",
    "inference_times",
    "inference_times_of",
    "efficiency_report",
]

#: bytes per MB in every report of this module (MiB)
MB = 2**20


def _check_shape(input_shape: Sequence[int], batch_size: int) -> tuple[int, ...]:
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"input_shape must be positive sizes without the batch axis, got {input_shape!r}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    return shape


def _dtype_of(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _example(model: nn.Module, input_shape: Sequence[int], batch_size: int, seed: int = 0) -> torch.Tensor:
    shape = _check_shape(input_shape, batch_size)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((int(batch_size), *shape), generator=gen, dtype=_dtype_of(model))
    return x.to(model_device(model))


def count_all_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model`` (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def model_bytes(model: nn.Module) -> int:
    """Bytes of all parameters plus all buffers of ``model``."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return int(params + buffers)


def _storage_key(t: torch.Tensor) -> tuple[str, int] | None:
    try:
        storage = t.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return None
    if storage.nbytes() == 0:
        return None
    return (str(t.device), storage.data_ptr())


class _LiveBytes(TorchDispatchMode):
    """Tracks the bytes of live storages produced by ATen ops (see the module docstring)."""

    def __init__(self, ignore: set[tuple[str, int]]):
        super().__init__()
        self.ignore = ignore
        self.refs: dict[tuple[str, int], int] = {}
        self.sizes: dict[tuple[str, int], int] = {}
        self.live = 0
        self.peak = 0

    def _release(self, key: tuple[str, int]) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            del self.refs[key]
            self.live -= self.sizes.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        flat, _ = tree_flatten(out)
        seen: set[int] = set()
        for t in flat:
            if not isinstance(t, torch.Tensor) or id(t) in seen:
                continue
            seen.add(id(t))
            key = _storage_key(t)
            if key is None or key in self.ignore:
                continue
            if key not in self.refs:
                self.refs[key] = 0
                self.sizes[key] = int(t.untyped_storage().nbytes())
                self.live += self.sizes[key]
            self.refs[key] += 1
            weakref.finalize(t, self._release, key)
        self.peak = max(self.peak, self.live)
        return out


def peak_activation_bytes(model: nn.Module, input_shape: Sequence[int], batch_size: int = 64) -> int:
    """Peak activation memory (bytes) of one eval/no_grad forward of a batch (module docstring).

    ``input_shape`` excludes the batch axis, e.g. ``(1, 8, 8)``. The model's mode is restored.
    """
    x = _example(model, input_shape, batch_size)
    ignore = {k for k in (_storage_key(t) for t in [x, *model.parameters(), *model.buffers()]) if k}
    with eval_mode(model):
        mode = _LiveBytes(ignore)
        with mode:
            out = model(x)
        peak = mode.peak
        del out
    return int(peak)




def multiply_accumulates(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulate operations of one eval/no_grad forward of ONE input of ``input_shape``
    (without the batch axis), counted over the model's convolutions and matrix products (module
    docstring) by torch's :class:`torch.utils.flop_counter.FlopCounterMode`, which counts two
    FLOPs per multiply-accumulate of those operations. Modules the model holds but does not call
    in its forward cost nothing. The model's mode is restored; a model on the meta device is
    counted without computing anything."""

    return multiply_accumulates_of(model, _example(model, input_shape, 1))


def multiply_accumulates_of(model: nn.Module, example: torch.Tensor) -> int:
    """:func:`multiply_accumulates` of one forward of the batch ``example`` (token ids of a language
    model, say), divided by its batch size: per input."""
    from torch.utils.flop_counter import FlopCounterMode

    with eval_mode(model), FlopCounterMode(display=False) as counter:
        model(example)
    return int(counter.get_total_flops()) // 2 // max(1, int(example.shape[0]))


def cuda_peak_bytes(model: nn.Module, input_shape: Sequence[int], batch_size: int = 64) -> int | None:
    """``torch.cuda.max_memory_allocated`` over one eval/no_grad forward, minus what was allocated
    before it; None when the model is not on a CUDA device."""
    device = model_device(model)
    if device.type != "cuda":
        return None
    x = _example(model, input_shape, batch_size)
    with eval_mode(model):
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = model(x)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        del out
    return int(peak - base)


def _timed_forward(model: nn.Module, x: torch.Tensor) -> float:
    cuda = x.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(x.device)
    t0 = time.perf_counter()
    model(x)
    if cuda:
        torch.cuda.synchronize(x.device)
    return time.perf_counter() - t0


def inference_times(models: Sequence[nn.Module], input_shapes: Sequence[Sequence[int]], batch_size: int = 64,
                    repeats: int = 20, warmup: int = 3) -> list[float]:
    """Median seconds of one eval/no_grad batch forward for each of ``models`` (``input_shapes[i]``
    without the batch axis), timed round-robin: ``warmup`` untimed rounds, then ``repeats`` rounds
    of one timed forward per model. Every model's mode is restored."""
    models = list(models)
    if len(models) != len(input_shapes):
        raise ValueError(f"got {len(models)} models but {len(input_shapes)} input shapes")
    return inference_times_of(models, [_example(m, shape, batch_size) for m, shape in zip(models, input_shapes)],
                              repeats=repeats, warmup=warmup)


def inference_times_of(models: Sequence[nn.Module], examples: Sequence[torch.Tensor], repeats: int = 20,
                       warmup: int = 3) -> list[float]:
    """:func:`inference_times` on given input batches (``examples[i]`` for ``models[i]``; token ids
    of a language model, say), timed round-robin the same way."""
    models = list(models)
    if len(models) != len(examples):
        raise ValueError(f"got {len(models)} models but {len(examples)} examples")
    if int(repeats) < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    if int(warmup) < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup!r}")
    xs = list(examples)
    times: list[list[float]] = [[] for _ in models]
    with eval_mode(*models):
        for _ in range(int(warmup)):
            for m, x in zip(models, xs):
                model_out = m(x)
                del model_out
        for _ in range(int(repeats)):
            for i, (m, x) in enumerate(zip(models, xs)):
                times[i].append(_timed_forward(m, x))
    return [float(statistics.median(t)) for t in times]


def inference_time(model: nn.Module, input_shape: Sequence[int], batch_size: int = 64, repeats: int = 20,
                   warmup: int = 3) -> float:
    """Median seconds of one eval/no_grad forward of a batch on the model's current device.

    ``warmup`` untimed runs come first; CUDA is synchronised before and after every timed run.
    The model's mode is restored.
    """
    return inference_times([model], [input_shape], batch_size, repeats=repeats, warmup=warmup)[0]


def efficiency_report(model: nn.Module, input_shape: Sequence[int], batch_size: int = 64, *,
                      repeats: int = 20, warmup: int = 3, latency: bool = True) -> dict[str, Any]:
    """All measures of the module docstring for one model, as a flat JSON-able dict.

    ``latency=False`` skips the timing (``latency_s``/``latency_ms`` are then None), e.g. to time
    several models together with :func:`inference_times`.

    Keys: ``parameters``, ``macs`` (multiply-accumulates per image), ``size_bytes``, ``size_mb``, ``activation_bytes``, ``activation_mb``
    (peak activation memory), ``cuda_peak_bytes`` (None off CUDA), ``latency_s``, ``latency_ms``
    (median per batch), ``batch_size``, ``device``.
    """
    size = model_bytes(model)
    act = peak_activation_bytes(model, input_shape, batch_size)
    seconds = inference_time(model, input_shape, batch_size, repeats=repeats, warmup=warmup) if latency else None
    return {
        "parameters": count_all_parameters(model),
        "macs": multiply_accumulates(model, input_shape),
        "size_bytes": size,
        "size_mb": size / MB,
        "activation_bytes": act,
        "activation_mb": act / MB,
        "cuda_peak_bytes": cuda_peak_bytes(model, input_shape, batch_size),
        "latency_s": seconds,
        "latency_ms": None if seconds is None else seconds * 1e3,
        "batch_size": int(batch_size),
        "device": str(model_device(model)),
    }
