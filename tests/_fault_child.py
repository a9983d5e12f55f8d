"""Fork server for ``tests/test_fault_injection.py``: trains toy runs that stop at a kill point.

Started once per test module (``python tests/_fault_child.py``), it imports torch and the package
(seconds) once, then reads one JSON command per line on stdin and forks a fresh process for each,
so every run is a separate process that the test kills with ``os.kill(pid, SIGKILL)`` without
paying torch's import again. The server itself runs no torch operation before it forks (no thread
pool to inherit). Protocol on stdout, one line each:

* ``READY`` once the imports are done;
* ``START <pid>`` -- the forked run began;
* ``KILLPOINT <point>`` -- the run reached its kill point and blocks there (until killed);
* ``DONE <json>`` -- the run finished without reaching a kill point (status, resumed_from, the
  epochs it trained);
* ``EXIT <pid> <code>`` -- the run's process ended (``-9`` when killed by SIGKILL).

A command is ``{"model": "fnn" | "conv", "run_dir": ..., "kill": <point> | null,
"snapshots": <folder> | null, "result": <file> | null}``. Kill points (all counted in the epochs
of the run, 1-based):

* ``step@E:S`` -- right after optimiser step ``S`` of epoch ``E`` (a patched ``Lookahead.step``);
* ``callback@E`` -- inside a training callback of epoch ``E`` (after evaluation, before the save);
* ``save@E:<file>:<phase>`` -- inside the atomic write of ``<file>`` (``checkpoint.pt``,
  ``metrics.jsonl``, ``run.json``) of epoch ``E``'s save, where ``<phase>`` is ``tmp`` (the
  temporary was just created, empty), ``half`` (the first half of its bytes written), ``written``
  (written and fsync'ed, before ``os.replace``) or ``replaced`` (right after ``os.replace``);
* ``repair:<file>:<phase>`` -- the same phases in the rewrite of a stale side file when a run is
  resumed.

The hooks wrap :func:`reproduce.files.storage._atomic_write`'s ``write`` callable and its ``os.replace``
(the library's own code does the writing); ``snapshots`` makes a run copy its three files after
every epoch's save into ``<snapshots>/<epoch>/`` (the reference run).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package first
# One intra-op thread in every run: no OpenMP pool exists to be inherited across fork(), every run
# computes with the same thread count (the same numerics), and on a busy 2-core machine a run takes
# a tenth of the time it takes with spinning worker threads.
os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"

import torch  # noqa: E402
import tqdm.auto  # noqa: E402,F401  (imported lazily by training; once here, not per run)
from torch.utils.data import TensorDataset  # noqa: E402

from reproduce.files import storage  # noqa: E402
from reproduce.training import loop as training  # noqa: E402
from reproduce.models.nets import ModelConfig  # noqa: E402
from reproduce.training.loop import TrainConfig, train  # noqa: E402

MODELS = {
    "fnn": ModelConfig("fnn", 3, 1, 8, fnn_width=8, fnn_depth=2),
    "conv": ModelConfig("residual", 3, 1, 8, (1, 1, 0, 0), width=1 / 16),
}
EPOCHS = 3
SAMPLES = 96
BATCH = 16
STEPS_PER_EPOCH = SAMPLES // BATCH  # 6
# lookahead_k=5: its cycles straddle epoch ends, so a resume must restore the slow weights and the
# step count (with the default 6 the fast weights equal the slow ones after every epoch)
# measure_start=False: the kill points count saves from epoch 1 (the epoch-0 record's save and its
# resume are tested in tests/test_training.py::test_a_run_stopped_after_epoch_zero_resumes_to_the_same_run)
CONFIG = TrainConfig(epochs=EPOCHS, batch_size=BATCH, lookahead_k=5, seed=3, measure_start=False)

KILL: str | None = None  # this process's kill point
CONTEXT: str | None = None  # "save@E" while _Run.save runs, "repair" while _start runs


def toy_data():
    """Deterministic in-memory data (built inside each run: no torch op runs in the server)."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(SAMPLES) % 3
    x = torch.randn(SAMPLES, 1, 8, 8, generator=g) + y[:, None, None, None].float()
    ds = TensorDataset(x, y)
    return SimpleNamespace(name="toy", train=ds, train_eval=ds, test=TensorDataset(x[:30], y[:30]),
                           num_classes=3)


def hit(point: str) -> None:
    """Block here for the test to kill this process when ``point`` is its kill point."""
    if point == KILL:
        print(f"KILLPOINT {point}", flush=True)
        time.sleep(120)
        os._exit(3)  # never carry on past a kill point, even when nobody killed us


# ----------------------------------------------------------------------------- hooks

_step = training.Lookahead.step


def _hooked_step(self) -> None:
    _step(self)
    n = self.step_count  # restored from the checkpoint on resume, so this counts the whole run
    hit(f"step@{(n - 1) // STEPS_PER_EPOCH + 1}:{(n - 1) % STEPS_PER_EPOCH + 1}")


_save = training._Run.save
SNAPSHOTS: Path | None = None


def _hooked_save(self) -> None:
    global CONTEXT
    CONTEXT = f"save@{self.epoch}"
    try:
        _save(self)
    finally:
        CONTEXT = None
    if SNAPSHOTS is not None:
        dest = SNAPSHOTS / str(self.epoch)
        dest.mkdir(parents=True)
        for name in ("checkpoint.pt", "metrics.jsonl", "run.json"):
            shutil.copy2(self.run_dir / name, dest / name)


_start = training._start


def _hooked_start(*args, **kwargs):
    global CONTEXT
    CONTEXT = "repair"
    try:
        return _start(*args, **kwargs)
    finally:
        CONTEXT = None


class _HalfWriter:
    """The temporary file, seen by the library's ``write`` callable: can stop after half the bytes."""

    def __init__(self, f, point: str):
        self.f, self.point = f, point

    def write(self, data):
        if KILL == self.point:
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            hit(self.point)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)


_atomic_write = storage._atomic_write


def _hooked_atomic_write(path, write, mode):
    if CONTEXT is None:
        return _atomic_write(path, write, mode)
    where = f"{CONTEXT}:{Path(path).name}"

    def hooked(f):
        hit(f"{where}:tmp")
        write(_HalfWriter(f, f"{where}:half"))

    return _atomic_write(path, hooked, mode)


class _OsOfStorage:
    """``os`` as :mod:`reproduce.files.storage` sees it: ``replace`` has a kill point on either side."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def replace(src, dst):
        name = Path(dst).name
        if CONTEXT is not None:
            hit(f"{CONTEXT}:{name}:written")
        os.replace(src, dst)
        if CONTEXT is not None:
            hit(f"{CONTEXT}:{name}:replaced")


training.Lookahead.step = _hooked_step
training._Run.save = _hooked_save
training._start = _hooked_start
storage._atomic_write = _hooked_atomic_write
storage.os = _OsOfStorage()


# ----------------------------------------------------------------------------- runs


def run(cmd: dict) -> None:
    global KILL, SNAPSHOTS
    print(f"START {os.getpid()}", flush=True)
    torch.set_num_threads(1)
    KILL = cmd.get("kill")
    SNAPSHOTS = Path(cmd["snapshots"]) if cmd.get("snapshots") else None
    trained = []

    def callback(model, epoch, record):
        trained.append(epoch)
        # a value of the weights in every record: the metrics then pin the weights of every epoch
        record["weight_l1"] = float(sum(p.detach().abs().sum() for p in model.parameters()))
        hit(f"callback@{epoch}")

    res = train(MODELS[cmd["model"]], toy_data(), CONFIG, cmd["run_dir"], callbacks=[callback], device="cpu",
                progress=False)
    if cmd.get("result"):
        torch.save(res.model.state_dict(), cmd["result"])
    print("DONE " + json.dumps({"status": res.status, "epochs_done": res.epochs_done,
                                "resumed_from": res.resumed_from, "trained": trained}), flush=True)


def main() -> None:
    print("READY", flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                run(cmd)
            except BaseException:  # noqa: BLE001 - reported on stderr, the exit code says it failed
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(f"EXIT {pid} {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    main()
