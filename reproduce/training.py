"""Training: the paper's optimiser, a resumable epoch loop, checkpoints and metrics.

The protocol of the method notes (``docs/method.md#training``): RAdam (lr 1e-3, eps 1e-6, decoupled
weight decay 1e-2) inside Lookahead (sync period 6, slow step 0.5), cross-entropy on logits, a
checkpoint after every epoch.

A run lives in one folder (``results/<scale>/<experiment>/<run>``) holding

* ``checkpoint.pt`` -- model and optimiser state, configs, the whole metrics history, the status;
* ``metrics.jsonl`` -- one JSON record per finished epoch (rewritten from the checkpoint);
* ``run.json``      -- a small summary (status, epochs done, diverged epoch, configs).

All three are written atomically (:mod:`reproduce.storage`). Starting a run whose folder holds a
finished run returns it without training; an unfinished one resumes from its last complete epoch;
an unreadable (e.g. truncated) checkpoint is reported and the run recomputed from scratch.

:func:`train` reads like the loop it runs: :func:`_start` (build, or resume from the checkpoint),
then per epoch :func:`_train_epoch` (the optimiser steps), :func:`_epoch_record` (evaluation and
callbacks) and :func:`_save`.

Determinism: the model is initialised from ``torch.manual_seed(seed)``; every epoch reseeds the
global RNG and the shuffling generator from ``(seed, epoch)``, so an interrupted-and-resumed run
follows exactly the same path as an uninterrupted one on the CPU.

A non-finite training loss ends the run with status ``diverged`` and the epoch at which it happened
(an untrainable network is one of the paper's results, not a crash).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .models import ModelConfig, build_model, eval_mode, model_device
from .storage import atomic_torch_save, atomic_write_text

__all__ = [
    "TrainConfig",
    "Lookahead",
    "RunResult",
    "Callback",
    "make_optimizer",
    "train",
    "load_run",
    "evaluate",
    "resolve_device",
    "final_test_accuracy",
    "RUN_STATUSES",
]

RUN_STATUSES = ("running", "finished", "diverged", "stopped")
CHECKPOINT_FORMAT = 1

#: ``callback(model, epoch, record)`` after every epoch; may add JSON-serialisable keys to
#: ``record``; setting ``record["stop"] = "<reason>"`` ends the run with status ``stopped``.
Callback = Callable[[nn.Module, int, dict], None]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (the paper's defaults)."""

    epochs: int
    batch_size: int = 64
    lr: float = 1e-3
    eps: float = 1e-6
    weight_decay: float = 1e-2
    lookahead_k: int = 6
    lookahead_alpha: float = 0.5
    seed: int = 0
    #: also evaluate accuracy/loss on the (unaugmented) training set after every epoch
    eval_train: bool = True
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.lookahead_k < 1 or not 0 < self.lookahead_alpha <= 1:
            raise ValueError(
                f"lookahead needs k >= 1 and 0 < alpha <= 1, got k={self.lookahead_k}, alpha={self.lookahead_alpha}"
            )


class Lookahead:
    """Lookahead (Zhang et al. 2019) around an inner optimiser.

    Every ``k`` inner steps the slow weights move ``alpha`` of the way to the fast weights and the
    fast weights are reset to them (TensorFlow-Addons semantics; slow weights start at the initial
    weights).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, k: int = 6, alpha: float = 0.5):
        self.optimizer = optimizer
        self.k = k
        self.alpha = alpha
        self.step_count = 0
        self.slow = [p.detach().clone() for g in optimizer.param_groups for p in g["params"]]

    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    def _params(self) -> Iterator[torch.Tensor]:
        for g in self.optimizer.param_groups:
            yield from g["params"]

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self) -> None:
        self.optimizer.step()
        self.step_count += 1
        if self.step_count % self.k == 0:
            for p, slow in zip(self._params(), self.slow):
                slow.add_(p - slow, alpha=self.alpha)
                p.copy_(slow)

    def state_dict(self) -> dict:
        return {"inner": self.optimizer.state_dict(), "slow": self.slow, "step_count": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["inner"])
        self.step_count = int(state["step_count"])
        with torch.no_grad():
            for slow, saved in zip(self.slow, state["slow"]):
                slow.copy_(saved)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> Lookahead:
    """RAdam with decoupled weight decay inside Lookahead (``docs/method.md#training``)."""
    inner = torch.optim.RAdam(
        model.parameters(), lr=cfg.lr, eps=cfg.eps, weight_decay=cfg.weight_decay, decoupled_weight_decay=True
    )
    return Lookahead(inner, k=cfg.lookahead_k, alpha=cfg.lookahead_alpha)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA when present, else the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class RunResult:
    """The outcome of :func:`train`; ``history`` holds one record per finished epoch."""

    run_dir: Path | None
    status: str
    epochs_done: int
    model: nn.Module
    history: list[dict]
    model_config: ModelConfig
    train_config: TrainConfig
    diverged_epoch: int | None = None
    stop_reason: str | None = None
    resumed_from: int = 0

    @property
    def test_accuracy(self) -> float:
        """Test accuracy of the last epoch (nan when no epoch finished)."""
        return self.history[-1]["test_acc"] if self.history else float("nan")

    def summary(self) -> dict:
        return {
            "status": self.status,
            "epochs_done": self.epochs_done,
            "diverged_epoch": self.diverged_epoch,
            "stop_reason": self.stop_reason,
            "model_config": asdict(self.model_config),
            "train_config": asdict(self.train_config),
        }


def final_test_accuracy(history: Sequence[dict], last: int) -> float:
    """Mean test accuracy over the last ``last`` epochs, nan for an empty history."""
    accs = [r["test_acc"] for r in history if r.get("test_acc") is not None][-max(1, last):]
    return float(sum(accs) / len(accs)) if accs else float("nan")


# --------------------------------------------------------------------------------------------
# data iteration


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + 12_345) % (2**63 - 1)


def _batches(ds: Dataset, batch_size: int, *, shuffle: bool, generator: torch.Generator | None,
             device: torch.device, num_workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of ``ds`` on ``device``; a fast in-memory path for TensorDatasets."""
    if isinstance(ds, TensorDataset):
        x, y = ds.tensors[0], ds.tensors[1]
        n = len(x)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            yield x[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
        return
    loader = DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=generator,
                        num_workers=num_workers, pin_memory=device.type == "cuda")
    for xb, yb in loader:
        yield xb.to(device, non_blocking=True), torch.as_tensor(yb).to(device, non_blocking=True)


def evaluate(model: nn.Module, ds: Dataset, *, batch_size: int = 256, device: torch.device | None = None,
             num_workers: int = 0) -> tuple[float, float]:
    """``(mean cross-entropy, accuracy)`` of ``model`` on ``ds`` under :func:`eval_mode`."""
    device = device or model_device(model)
    total, loss_sum, correct = 0, 0.0, 0
    with eval_mode(model):
        for xb, yb in _batches(ds, batch_size, shuffle=False, generator=None, device=device,
                               num_workers=num_workers):
            logits = model(xb)
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
            correct += (logits.argmax(1) == yb).sum().item()
            total += len(yb)
    if total == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    return loss_sum / total, correct / total


# --------------------------------------------------------------------------------------------
# checkpoints


def _load_checkpoint(path: Path) -> dict | None:
    """The checkpoint at ``path``; None (with a warning) when it is unreadable or incomplete."""
    if not path.exists():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("unknown checkpoint format")
        for key in ("model_config", "train_config", "model", "optimizer", "history", "status", "epoch"):
            if key not in ckpt:
                raise ValueError(f"missing key {key!r}")
        return ckpt
    except Exception as exc:  # truncated zip, pickle error, ...
        warnings.warn(f"checkpoint {path} is unreadable ({exc}); recomputing the run from scratch",
                      RuntimeWarning, stacklevel=3)
        return None


def _model_config_from_dict(d: dict) -> ModelConfig:
    d = dict(d)
    d["blocks"] = tuple(d.get("blocks", ()))
    d["removed"] = tuple(d.get("removed", ()))
    return ModelConfig(**d)


def _train_config_from_dict(d: dict) -> TrainConfig:
    return TrainConfig(**d)


def load_run(run_dir: str | Path, device: str | torch.device | None = "cpu") -> RunResult | None:
    """Load the run stored in ``run_dir`` (any status), or None if there is no readable one."""
    run_dir = Path(run_dir)
    ckpt = _load_checkpoint(run_dir / "checkpoint.pt")
    if ckpt is None:
        return None
    mcfg = _model_config_from_dict(ckpt["model_config"])
    tcfg = _train_config_from_dict(ckpt["train_config"])
    model = build_model(mcfg)
    model.load_state_dict(ckpt["model"])
    model.to(resolve_device(device))
    return RunResult(run_dir, ckpt["status"], int(ckpt["epoch"]), model, list(ckpt["history"]), mcfg, tcfg,
                     ckpt.get("diverged_epoch"), ckpt.get("stop_reason"), int(ckpt["epoch"]))


def _save(run_dir: Path, *, model: nn.Module, opt: Lookahead, mcfg: ModelConfig, tcfg: TrainConfig,
          history: list[dict], status: str, epoch: int, diverged_epoch: int | None,
          stop_reason: str | None, data_name: str, data_identity: dict) -> None:
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "model_config": asdict(mcfg),
        "train_config": asdict(tcfg),
        "data": data_name,
        "data_identity": data_identity,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": _to_cpu(opt.state_dict()),
        "history": history,
        "status": status,
        "epoch": epoch,
        "diverged_epoch": diverged_epoch,
        "stop_reason": stop_reason,
    }
    atomic_torch_save(run_dir / "checkpoint.pt", ckpt)
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    summary = {"status": status, "epochs_done": epoch, "diverged_epoch": diverged_epoch,
               "stop_reason": stop_reason, "data": data_name, "model_config": asdict(mcfg),
               "train_config": asdict(tcfg)}
    atomic_write_text(run_dir / "run.json", json.dumps(summary, indent=2) + "\n")


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_cpu(v) for v in obj)
    return obj


# --------------------------------------------------------------------------------------------
# the loop


def _progress(iterable: Iterable, progress: bool, **kw: Any):
    from tqdm.auto import tqdm

    if not progress:
        kw["disable"] = True
    return tqdm(iterable, **kw)


@dataclass
class _Run:
    """What the loop carries from one epoch to the next (and what a checkpoint stores)."""

    run_dir: Path | None
    model: nn.Module
    opt: Lookahead
    mcfg: ModelConfig
    tcfg: TrainConfig
    data_name: str
    data_identity: dict
    history: list[dict]
    epoch: int = 0
    status: str = "running"
    diverged_epoch: int | None = None
    stop_reason: str | None = None
    resumed_from: int = 0

    def result(self) -> RunResult:
        return RunResult(self.run_dir, self.status, self.epoch, self.model, self.history, self.mcfg, self.tcfg,
                         self.diverged_epoch, self.stop_reason, self.resumed_from)

    def save(self) -> None:
        if self.run_dir is not None:
            _save(self.run_dir, model=self.model, opt=self.opt, mcfg=self.mcfg, tcfg=self.tcfg,
                  history=self.history, status=self.status, epoch=self.epoch,
                  diverged_epoch=self.diverged_epoch, stop_reason=self.stop_reason, data_name=self.data_name,
                  data_identity=self.data_identity)


def _check_same_run(ckpt: dict, run: _Run) -> None:
    """ValueError when the checkpoint in the run folder holds another configuration or other data."""
    mcfg, tcfg = asdict(run.mcfg), asdict(run.tcfg)
    saved_m, saved_t = ckpt["model_config"], ckpt["train_config"]
    # checkpoints written before data identities were stored are compared by name only
    saved_id = ckpt.get("data_identity", {"name": ckpt.get("data")})
    same_data = saved_id == (run.data_identity if "data_identity" in ckpt else {"name": run.data_name})
    if saved_m == mcfg and saved_t == tcfg and same_data:
        return
    diff = [k for k in mcfg if saved_m.get(k) != mcfg[k]] + [k for k in tcfg if saved_t.get(k) != tcfg[k]]
    if not same_data:
        diff.append(f"data {saved_id} != {run.data_identity}")
    raise ValueError(f"run folder {run.run_dir} holds a run with a different configuration (differs in: "
                     f"{', '.join(diff)}); use another folder or delete it")


def _start(mcfg: ModelConfig, data: Any, tcfg: TrainConfig, run_dir: Path | None, dev: torch.device,
           init_fn: Callable[[nn.Module], None] | None) -> _Run:
    """A freshly initialised run, or the run stored in ``run_dir`` resumed from its checkpoint."""
    torch.manual_seed(tcfg.seed)
    model = build_model(mcfg)
    if init_fn is not None:
        init_fn(model)
    model = model.to(dev)
    data_name = getattr(data, "name", type(data).__name__)
    run = _Run(run_dir, model, make_optimizer(model, tcfg), mcfg, tcfg, data_name,
               dict(getattr(data, "identity", None) or {"name": data_name}), [])
    ckpt = _load_checkpoint(run_dir / "checkpoint.pt") if run_dir else None
    if ckpt is not None:
        _check_same_run(ckpt, run)
        model.load_state_dict(ckpt["model"])
        run.opt.load_state_dict(ckpt["optimizer"])
        run.history = list(ckpt["history"])
        run.epoch, run.status = int(ckpt["epoch"]), ckpt["status"]
        run.diverged_epoch, run.stop_reason = ckpt.get("diverged_epoch"), ckpt.get("stop_reason")
    run.resumed_from = run.epoch
    return run


def _train_epoch(run: _Run, train_set: Dataset, dev: torch.device) -> dict[str, Any] | None:
    """One epoch of optimiser steps; the running loss/accuracy, or None when the run diverged."""
    tcfg, model, opt = run.tcfg, run.model, run.opt
    epoch = run.epoch + 1
    torch.manual_seed(_epoch_seed(tcfg.seed, epoch))
    gen = torch.Generator().manual_seed(_epoch_seed(tcfg.seed, epoch))
    model.train()
    n_seen, loss_sum, correct = 0, 0.0, 0
    for xb, yb in _batches(train_set, tcfg.batch_size, shuffle=True, generator=gen, device=dev,
                           num_workers=tcfg.num_workers):
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        if not torch.isfinite(loss):
            return None
        opt.zero_grad()
        loss.backward()
        opt.step()
        n = len(yb)
        n_seen += n
        loss_sum += loss.item() * n
        correct += (logits.argmax(1) == yb).sum().item()
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        return None
    return {"epoch": epoch, "train_loss_running": loss_sum / max(n_seen, 1),
            "train_acc_running": correct / max(n_seen, 1)}


def _epoch_record(run: _Run, record: dict[str, Any], data: Any, dev: torch.device,
                  callbacks: Sequence[Callback]) -> dict[str, Any]:
    """The epoch's record: evaluation on the (unaugmented) training and test sets, then callbacks."""
    tcfg = run.tcfg
    if tcfg.eval_train:
        record["train_loss"], record["train_acc"] = evaluate(run.model, data.train_eval, device=dev,
                                                             num_workers=tcfg.num_workers)
    record["test_loss"], record["test_acc"] = evaluate(run.model, data.test, device=dev,
                                                       num_workers=tcfg.num_workers)
    for cb in callbacks:
        cb(run.model, record["epoch"], record)
    # one JSON round trip: numpy scalars become plain floats (torch.load(weights_only=True) would
    # reject them on resume) and a value JSON cannot hold fails here, at the epoch that made it
    return json.loads(json.dumps(record))


def train(
    model_config: ModelConfig,
    data: Any,
    train_config: TrainConfig,
    run_dir: str | Path | None = None,
    *,
    callbacks: Sequence[Callback] = (),
    device: str | torch.device | None = "auto",
    progress: bool = True,
    desc: str | None = None,
    stop_after: int | None = None,
    init_fn: Callable[[nn.Module], None] | None = None,
) -> RunResult:
    """Train ``model_config`` on ``data`` (a :class:`reproduce.data.DataBundle`), resumably.

    ``run_dir`` (optional) is the run's folder; with it, every epoch is checkpointed and a later call
    with the same configs resumes or returns the finished run. A folder holding a *different*
    config raises ValueError. ``callbacks`` run after every epoch (see :data:`Callback`).
    ``stop_after`` ends the call after that many epochs in total without marking the run finished
    (used to simulate an interruption; the run resumes later). ``init_fn(model)`` changes the freshly
    built model before the optimiser sees it (e.g. a collapsed layer); it is not part of the stored
    config, so give such runs a folder of their own.
    """
    dev = resolve_device(device)
    tcfg = train_config
    run = _start(model_config, data, tcfg, Path(run_dir) if run_dir is not None else None, dev, init_fn)
    if run.status != "running" or run.epoch >= tcfg.epochs:
        if run.status == "running":
            run.status = "finished"
        return run.result()

    last = tcfg.epochs if stop_after is None else min(tcfg.epochs, stop_after)
    bar = _progress(range(run.epoch, last), progress, desc=desc or model_config.label, unit="epoch", leave=False)
    for _ in bar:
        t0 = time.perf_counter()
        record = _train_epoch(run, data.train, dev)
        run.epoch += 1
        if record is None:
            run.status, run.diverged_epoch = "diverged", run.epoch
            run.history.append({"epoch": run.epoch, "diverged": True, "test_acc": None,
                                "seconds": time.perf_counter() - t0})
            run.save()
            break
        record = _epoch_record(run, record, data, dev, callbacks)
        record["seconds"] = time.perf_counter() - t0
        run.history.append(record)
        if record.get("stop"):
            run.status, run.stop_reason = "stopped", str(record["stop"])
        elif run.epoch >= tcfg.epochs:
            run.status = "finished"
        run.save()
        bar.set_postfix(loss=f"{record['train_loss_running']:.3f}", test=f"{record['test_acc']:.3f}")
        if run.status != "running":
            break
    bar.close()
    return run.result()
