"""Fault injection: kill a training process (SIGKILL) inside an epoch, a callback and a save, resume it,
and require the result to be bit-identical to an uninterrupted run.

Every run is a separate process forked by ``tests/_fault_child.py`` (a fork server that imports torch
once), which stops at the kill point it was given, prints a marker and blocks; the test then kills
it with ``os.kill(pid, SIGKILL)``. After each kill the run folder must be in exactly the state the
kill point implies (checkpoint of the last completed save, each side file either current or one
epoch behind, at most the one temporary of the interrupted write), every file in it equal to the
uninterrupted run's file of that epoch. A last process resumes the run to the end; its checkpoint
(weights, optimiser state, history), ``run.json`` and ``metrics.jsonl`` must equal the uninterrupted
run's (``seconds`` fields aside), no temporary may be left, and it must have resumed from the last
saved epoch instead of retraining.

Kill points (see ``tests/_fault_child.py``): after optimiser step S of epoch E, inside a callback,
and in each phase (temporary created / half written / written before the rename / right after the
rename) of the atomic write of the checkpoint and of both side files, during the save of an epoch or
during the repair of stale side files on resume. A fixed list covers every phase; the rest are drawn
by a seeded ``random.Random`` (single kills and chains of kills in successive resumes).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from reproduce.files.checkpoints import is_truncated, load_checkpoint
from reproduce.training.loop import load_run

CHILD = Path(__file__).with_name("_fault_child.py")
ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 3  # as in _fault_child.py
STEPS = 6  # optimiser steps per epoch (96 samples, batch 16)
FILES = ("checkpoint.pt", "metrics.jsonl", "run.json")
PHASES = ("tmp", "half", "written", "replaced")
TIMEOUT = 180  # seconds for one run to reach its kill point or its end (never reached when all is well)


# ----------------------------------------------------------------------------- the kill points


def events(state: dict[str, int]) -> list[str]:
    """Every kill point, in order, that a run started on a folder in ``state`` passes.

    ``state`` maps each of :data:`FILES` to the epoch it holds (0: absent).
    """
    ck = state["checkpoint.pt"]
    out = []
    if ck:  # stale side files are rewritten from the checkpoint, metrics first
        out += [f"repair:{f}:{p}" for f in FILES[1:] if state[f] != ck for p in PHASES]
    for e in range(ck + 1, EPOCHS + 1):
        out += [f"step@{e}:{s}" for s in range(1, STEPS + 1)]
        out.append(f"callback@{e}")
        out += [f"save@{e}:{f}:{p}" for f in FILES for p in PHASES]
    return out


def after_kill(state: dict[str, int], point: str) -> tuple[dict[str, int], str | None, str | None]:
    """``(state, temporary, phase)`` of the folder after a run started in ``state`` is killed at
    ``point``: the epoch each file holds, the file whose temporary is left (None: no temporary), and
    the phase of that write."""
    state = dict(state)
    for ev in events(state):
        tmp = phase = None
        if ev.startswith(("save@", "repair:")):
            where, name, phase = ev.rsplit(":", 2)
            epoch = state["checkpoint.pt"] if where == "repair" else int(where[len("save@"):])
            if phase == "replaced":
                state[name] = epoch
            else:
                tmp = name
        if ev == point:
            return state, tmp, phase
    raise AssertionError(f"kill point {point} is never reached from {state}")


FRESH = {f: 0 for f in FILES}

# Every phase at least once: optimiser steps (first, middle, last of a run), callbacks, each phase of
# each file's write, a kill in the last epoch's save (the run is finished in the checkpoint but its
# side files are stale: only the repair fixes them), and kills while a resume repairs side files.
DESIGNED = [
    ("fnn", ["step@1:1"]),
    ("fnn", ["step@2:4"]),
    ("conv", ["step@3:6"]),
    ("fnn", ["callback@2"]),
    ("conv", ["callback@3"]),
    ("fnn", ["save@1:checkpoint.pt:tmp"]),
    ("conv", ["save@2:checkpoint.pt:half"]),
    ("fnn", ["save@1:checkpoint.pt:written"]),
    ("conv", ["save@3:checkpoint.pt:written"]),
    ("conv", ["save@2:checkpoint.pt:replaced"]),
    ("fnn", ["save@3:checkpoint.pt:replaced"]),
    ("conv", ["save@1:metrics.jsonl:tmp"]),
    ("fnn", ["save@2:metrics.jsonl:half"]),
    ("fnn", ["save@3:metrics.jsonl:written"]),
    ("conv", ["save@3:metrics.jsonl:replaced"]),
    ("fnn", ["save@2:run.json:tmp"]),
    ("conv", ["save@3:run.json:half"]),
    ("fnn", ["save@2:run.json:written"]),
    ("fnn", ["save@3:run.json:replaced"]),
    ("fnn", ["save@3:checkpoint.pt:replaced", "repair:metrics.jsonl:half"]),
    ("conv", ["save@2:checkpoint.pt:replaced", "repair:metrics.jsonl:replaced"]),
    ("fnn", ["save@3:metrics.jsonl:replaced", "repair:run.json:written"]),
    ("conv", ["save@1:checkpoint.pt:replaced", "repair:run.json:tmp", "step@2:2"]),
]


def drawn(rng: random.Random, singles: int, chains: int) -> list[tuple[str, list[str]]]:
    """Random kill points over (epoch, step or phase): ``singles`` single kills not already in
    :data:`DESIGNED` and ``chains`` chains of 2-3 kills in successive resumes."""
    taken = {(m, tuple(c)) for m, c in DESIGNED}
    out = []
    while len(out) < singles:
        case = (rng.choice(["fnn", "conv"]), [rng.choice(events(FRESH))])
        if (case[0], tuple(case[1])) not in taken:
            taken.add((case[0], tuple(case[1])))
            out.append(case)
    for _ in range(chains):
        model, chain, state = rng.choice(["fnn", "conv"]), [], FRESH
        for _ in range(rng.choice([2, 3])):
            choices = events(state)
            if not choices:
                break
            chain.append(rng.choice(choices))
            state = after_kill(state, chain[-1])[0]
        out.append((model, chain))
    return out


CASES = DESIGNED + drawn(random.Random(20240611), singles=10, chains=4)


def case_id(case) -> str:
    model, chain = case
    return f"{model}-" + ">".join(chain)


# ----------------------------------------------------------------------------- the fork server


class ForkServer:
    """``tests/_fault_child.py``, one process for the module; :meth:`run` forks one run from it."""

    def __init__(self, log: Path):
        self.log = log
        self.log_file = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log_file, text=True, bufsize=1, start_new_session=True,
            env={**os.environ, "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"})
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._next() == "READY"

    def _read(self) -> None:
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _next(self) -> str:
        try:
            line = self.lines.get(timeout=TIMEOUT)
        except queue.Empty:
            self.close(force=True)
            raise AssertionError(f"fault child silent for {TIMEOUT} s; its stderr:\n{self.stderr()}") from None
        if line is None:
            raise AssertionError(f"fault child server ended; its stderr:\n{self.stderr()}")
        return line

    def stderr(self) -> str:
        return self.log.read_text()[-4000:]

    def run(self, model: str, run_dir: Path, kill: str | None = None, **paths: Path) -> dict:
        """One run in a fresh process: killed at ``kill`` (with SIGKILL, once it reports the kill
        point) or to its end. ``{"exit": code, "killed_at": point | None, "done": info | None}``."""
        cmd = {"model": model, "run_dir": str(run_dir), "kill": kill, **{k: str(v) for k, v in paths.items()}}
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        pid, out = None, {"killed_at": None, "done": None}
        while True:
            line = self._next()
            word, _, rest = line.partition(" ")
            if word == "START":
                pid = int(rest)
            elif word == "KILLPOINT":
                out["killed_at"] = rest
                os.kill(pid, signal.SIGKILL)
            elif word == "DONE":
                out["done"] = json.loads(rest)
            elif word == "EXIT":
                out["exit"] = int(rest.split()[1])
                return out
            else:
                raise AssertionError(f"unexpected line from the fault child: {line!r}")

    def close(self, force: bool = False) -> None:
        if self.proc.poll() is None:
            if force:
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # end of commands: the server exits
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log_file.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ForkServer(tmp_path_factory.mktemp("fault_server") / "stderr.log")
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def reference(server, tmp_path_factory):
    """Per model: the uninterrupted run's folder and its files after every epoch's save."""
    refs = {}

    def get(model: str) -> Path:
        if model not in refs:
            root = tmp_path_factory.mktemp(f"reference_{model}")
            out = server.run(model, root / "run", snapshots=root / "epochs", result=root / "model.pt")
            assert out["exit"] == 0 and out["done"]["status"] == "finished", (out, server.stderr())
            refs[model] = root
        return refs[model]

    return get


# ----------------------------------------------------------------------------- comparisons


def without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def metrics(path: Path) -> list[dict]:
    return without_seconds([json.loads(line) for line in path.read_text().splitlines()])


def differences(a, b, where: str = "") -> list[str]:
    """Where ``a`` and ``b`` differ (tensors bit for bit: dtype, shape and every value)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(a, b))
        return [] if same else [where or "<tensor>"]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where} keys {sorted(map(str, a))} != {sorted(map(str, b))}"]
        return [d for k in a for d in differences(a[k], b[k], f"{where}/{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where} length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b and type(a) is type(b) else [f"{where}: {a!r} != {b!r}"]


def checkpoint_state(path: Path) -> dict:
    state = load_checkpoint(path)  # verifies the checksum
    assert state is not None, f"{path} is missing or truncated"
    return dict(state, history=without_seconds(state["history"]))


def temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp"))


def check_after_kill(folder: Path, epochs: Path, state: dict[str, int], tmp: str | None, phase: str | None) -> None:
    """The folder holds exactly what a kill at this point leaves: each file as the uninterrupted
    run wrote it after the epoch ``state`` names, and only the interrupted write's temporary."""
    names = {p.name for p in folder.iterdir()} - {".lock"}
    expected = {f for f in FILES if state[f]}
    assert names - {p.name for p in temporaries(folder)} == expected, (names, state)
    for name in expected:
        snap = epochs / str(state[name]) / name
        if name == "checkpoint.pt":
            assert not differences(checkpoint_state(folder / name), checkpoint_state(snap)), name
        elif name == "metrics.jsonl":
            assert metrics(folder / name) == metrics(snap)
        else:
            assert (folder / name).read_bytes() == snap.read_bytes()
    left = temporaries(folder)
    if tmp is None:
        assert not left, left
        return
    assert len(left) == 1 and left[0].name.startswith(f".{tmp}."), (left, tmp)
    blob = left[0].read_bytes()
    if phase == "tmp":
        assert blob == b""
    elif phase == "half":
        assert blob and (tmp != "checkpoint.pt" or is_truncated(blob))
    elif tmp == "checkpoint.pt":  # written and synced, not yet renamed: the next epoch's checkpoint
        assert load_checkpoint(left[0]) is not None


# ----------------------------------------------------------------------------- the test


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_killed_and_resumed_run_equals_the_uninterrupted_run(case, server, reference, tmp_path):
    model, chain = case
    ref = reference(model)
    folder = tmp_path / "run"
    state = FRESH
    for point in chain:
        state, tmp, phase = after_kill(state, point)
        out = server.run(model, folder, kill=point)
        assert out["killed_at"] == point and out["exit"] == -signal.SIGKILL, (out, server.stderr())
        check_after_kill(folder, ref / "epochs", state, tmp, phase)

    out = server.run(model, folder, result=tmp_path / "model.pt")
    assert out["exit"] == 0, (out, server.stderr())
    saved = state["checkpoint.pt"]
    # resumed from the last saved epoch: trained only the epochs after it
    assert out["done"] == {"status": "finished", "epochs_done": EPOCHS, "resumed_from": saved,
                           "trained": list(range(saved + 1, EPOCHS + 1))}

    assert not temporaries(folder), temporaries(folder)
    assert {p.name for p in folder.iterdir()} == {*FILES, ".lock"}
    # the whole checkpoint (weights, buffers, optimiser and lookahead state, history, configs)
    diff = differences(checkpoint_state(folder / "checkpoint.pt"), checkpoint_state(ref / "run" / "checkpoint.pt"))
    assert not diff, diff[:10]
    # the final weights, as load_run (checksum verified) and the resumed train() return them
    mine, theirs = load_run(folder), load_run(ref / "run")
    assert mine.status == "finished" and mine.epochs_done == EPOCHS
    for got in (mine.model.state_dict(), torch.load(tmp_path / "model.pt", weights_only=True)):
        assert not differences(got, theirs.model.state_dict())
    assert not differences(torch.load(ref / "model.pt", weights_only=True), theirs.model.state_dict())
    # the side files
    assert (folder / "run.json").read_bytes() == (ref / "run" / "run.json").read_bytes()
    assert metrics(folder / "metrics.jsonl") == metrics(ref / "run" / "metrics.jsonl")
    assert metrics(folder / "metrics.jsonl") == without_seconds(mine.history)


def test_the_kill_points_cover_every_phase():
    points = [p for _, chain in CASES for p in chain]
    assert len(points) >= 20
    kinds = {p.split("@")[0] if "@" in p else "repair" for p in points}
    assert kinds == {"step", "callback", "save", "repair"}
    for f in FILES:
        for phase in PHASES:
            assert any(p.startswith("save@") and p.endswith(f":{f}:{phase}") for p in points), (f, phase)
    for f in FILES[1:]:
        assert any(p.startswith(f"repair:{f}:") for p in points), f
    assert {m for m, _ in CASES} == {"fnn", "conv"}
