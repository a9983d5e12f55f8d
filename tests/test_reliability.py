"""Faults found by trying to break the runs: each test failed before its fix.

Divergence under a measuring callback, checkpoints that are unreadable for reasons other than
truncation, corrupted checkpoints, stale side files and leaked temporaries, two trainers on one
folder, and the bad inputs that used to give unhelpful errors.
"""

import errno
import json
import math
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from reproduce.metric import bundles
from reproduce.experiments import fnn_map
from reproduce.training import loop as training
from reproduce.metric.bundles import BundleCallback, bundle_stats, measure_model
from reproduce.data.datasets import load_dataset, measurement_samples
from reproduce.models.nets import ModelConfig, build_model, conv_config
from reproduce.training.loop import CheckpointError, RunLockedError, TrainConfig, load_run, run_lock, train


FNN = ModelConfig("fnn", 3, 1, 8, fnn_width=8, fnn_depth=2)
CONV = ModelConfig("residual", 3, 1, 8, (1, 1, 0, 0), width=1 / 16)


# --------------------------------------------------------------------------- 1. divergence


@pytest.mark.parametrize("kind", ["plain", "residual"])
@pytest.mark.parametrize("lr", [1e3, 1e4])
def test_divergence_under_a_measuring_callback_is_recorded_not_raised(tmp_path, kind, lr):
    # measured: with these learning rates eval-mode batch-norm statistics (and so the measured
    # activations) turn non-finite before the training loss does
    data = load_dataset("digits", seed=0, train_limit=256)
    x, y = measurement_samples(data, 64, 0)
    cfg = TrainConfig(epochs=4, batch_size=64, lr=lr, seed=0)
    mcfg = conv_config(kind, 10, data, width=1 / 16)
    cb = BundleCallback(x, y, num_classes=10, lr=lr, batch_size=64)
    res = train(mcfg, data, cfg, tmp_path, progress=False, callbacks=[cb])
    assert res.status == "diverged" and res.diverged_epoch is not None
    assert res.history[-1]["diverged"] is True
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "diverged"
    # a rerun returns the recorded result instead of crashing again
    again = train(mcfg, data, cfg, tmp_path, progress=False, callbacks=[cb])
    assert again.status == "diverged" and again.diverged_epoch == res.diverged_epoch


def test_non_finite_training_data_is_a_data_error_not_a_divergence(tmp_path, toy_data):
    data = toy_data()
    data.train.tensors[0][5, 0, 2, 3] = float("nan")  # one NaN pixel
    with pytest.raises(ValueError, match="training data.*non-finite"):
        train(FNN, data, TrainConfig(epochs=2, batch_size=16), tmp_path, progress=False)


def test_diverged_run_reports_nan_test_accuracy(tmp_path, toy_data):
    res = train(FNN, toy_data(), TrainConfig(epochs=3, batch_size=16, lr=1e6), tmp_path, progress=False)
    assert res.status == "diverged"
    assert isinstance(res.test_accuracy, float) and math.isnan(res.test_accuracy)


# --------------------------------------------------------------------------- 2./4. checkpoints


def _finished(tmp_path, toy_data, epochs=2):
    data, cfg = toy_data(), TrainConfig(epochs=epochs, batch_size=16)
    run = train(FNN, data, cfg, tmp_path, progress=False)
    return data, cfg, run


def test_a_checkpoint_of_a_newer_format_stops_with_an_error_and_is_kept(tmp_path, toy_data):
    data, cfg, _ = _finished(tmp_path, toy_data)
    ckpt = tmp_path / "checkpoint.pt"
    torch.save({"format": 99, "payload": torch.zeros(3)}, ckpt)
    before = ckpt.read_bytes()
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt.*newer"):
        train(FNN, data, cfg, tmp_path, progress=False)
    assert ckpt.read_bytes() == before


def test_an_io_error_while_loading_stops_with_an_error_and_keeps_the_file(tmp_path, monkeypatch, toy_data):
    data, cfg, _ = _finished(tmp_path, toy_data)
    ckpt = tmp_path / "checkpoint.pt"
    before = ckpt.read_bytes()

    def failing_load(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(torch, "load", failing_load)
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt.*Input/output error"):
        train(FNN, data, cfg, tmp_path, progress=False)
    assert ckpt.read_bytes() == before


def _largest_member_offset(path):
    """File offset of the middle of the largest stored record of a torch zip checkpoint."""
    with zipfile.ZipFile(path) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(f.read(4), dtype="<u2")
    return info.header_offset + 30 + int(name_len) + int(extra_len) + info.file_size // 2


def test_one_flipped_bit_in_tensor_data_is_detected(tmp_path, toy_data):
    data, cfg, _ = _finished(tmp_path, toy_data)
    ckpt = tmp_path / "checkpoint.pt"
    blob = bytearray(ckpt.read_bytes())
    blob[_largest_member_offset(ckpt)] ^= 0x40
    ckpt.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt.*checksum"):
        load_run(tmp_path)
    with pytest.raises(CheckpointError, match="checksum"):
        train(FNN, data, cfg, tmp_path, progress=False)
    assert ckpt.read_bytes() == bytes(blob)  # left as found, for the user to inspect


def test_a_truncated_checkpoint_is_still_recomputed(tmp_path, same_weights, toy_data):
    data, cfg = toy_data(), TrainConfig(epochs=2, batch_size=16)
    ref = train(FNN, data, cfg, tmp_path / "ref", progress=False)
    train(FNN, data, cfg, tmp_path / "run", progress=False, stop_after=1)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.warns(RuntimeWarning, match="truncated"):
        rerun = train(FNN, data, cfg, tmp_path / "run", progress=False)
    assert rerun.status == "finished" and same_weights(ref.model, rerun.model)


def test_a_failing_write_surfaces_as_the_os_error_and_keeps_the_old_checkpoint(tmp_path):
    """A write that fails mid-file (here: the file-size limit, as a full disk would) must raise the
    operating system's error, not torch's 'unexpected pos', and leave the previous checkpoint."""
    script = textwrap.dedent(f"""
        import errno, json, resource, signal, sys
        from pathlib import Path
        from types import SimpleNamespace
        import torch
        from torch.utils.data import TensorDataset
        from reproduce.models.nets import ModelConfig
        from reproduce.training.loop import TrainConfig, train
        x = torch.randn(96, 1, 8, 8); y = torch.arange(96) % 3
        ds = TensorDataset(x, y)
        data = SimpleNamespace(name="toy", train=ds, train_eval=ds, test=ds, num_classes=3)
        mcfg = ModelConfig("fnn", 3, 1, 8, fnn_width=256, fnn_depth=2)
        cfg = TrainConfig(epochs=3, batch_size=16)
        folder = Path({str(tmp_path)!r})
        train(mcfg, data, cfg, folder, progress=False, stop_after=1)
        size = (folder / "checkpoint.pt").stat().st_size
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))
        try:
            train(mcfg, data, cfg, folder, progress=False)
        except BaseException as exc:
            print(json.dumps([type(exc).__name__, getattr(exc, "errno", None), str(exc)[:400]]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    name, err, text = json.loads(out.stdout.strip().splitlines()[-1])
    assert err == errno.EFBIG, (name, err, text)
    assert "unexpected pos" not in text
    # the error names the file it could not write (before: a bare "[Errno 27] File too large")
    assert str(tmp_path / "checkpoint.pt") in text, text
    # the checkpoint of epoch 1 is intact and no temporary is left behind
    assert load_run(tmp_path).epochs_done == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- 5. side files, temporaries


def test_stale_side_files_and_leaked_temporaries_are_repaired(tmp_path, toy_data):
    data, cfg = toy_data(), TrainConfig(epochs=3, batch_size=16)
    train(FNN, data, cfg, tmp_path, progress=False)
    good_summary = json.loads((tmp_path / "run.json").read_text())
    good_metrics = (tmp_path / "metrics.jsonl").read_text()
    # a kill between the checkpoint's rename and the side files' write, and killed saves
    stale = dict(good_summary, status="running", epochs_done=2)
    (tmp_path / "run.json").write_text(json.dumps(stale))
    (tmp_path / "metrics.jsonl").write_text("".join(good_metrics.splitlines(keepends=True)[:2]))
    for i in range(3):
        (tmp_path / f".checkpoint.pt.dead{i}.tmp").write_bytes(b"x" * 100)
    again = train(FNN, data, cfg, tmp_path, progress=False)
    assert again.status == "finished"
    assert json.loads((tmp_path / "run.json").read_text()) == good_summary
    assert (tmp_path / "metrics.jsonl").read_text() == good_metrics
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_two_trainers_on_one_folder_do_not_both_train(tmp_path, toy_data):
    data, cfg = toy_data(), TrainConfig(epochs=2, batch_size=16)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from reproduce.training.loop import run_lock
            with run_lock({str(tmp_path)!r}):
                print("locked", flush=True)
                time.sleep(30)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=str(tmp_path)):
            train(FNN, data, cfg, tmp_path, progress=False)
    finally:
        holder.kill()
        holder.wait()
    # the lock dies with its holder
    assert train(FNN, data, cfg, tmp_path, progress=False).status == "finished"
    with run_lock(tmp_path):
        pass


# --------------------------------------------------------------------------- records and data


def test_numpy_scalars_from_a_callback_are_stored_as_plain_numbers(tmp_path, toy_data):
    def cb(model, epoch, record):
        record["f32"] = np.float32(0.5)
        record["i64"] = np.int64(7)
        record["arr"] = np.arange(3, dtype=np.int32)

    res = train(FNN, toy_data(), TrainConfig(epochs=2, batch_size=16), tmp_path, progress=False, callbacks=[cb])
    rec = res.history[-1]
    assert rec["f32"] == 0.5 and type(rec["f32"]) is float
    assert rec["i64"] == 7 and type(rec["i64"]) is int
    assert rec["arr"] == [0, 1, 2]
    assert load_run(tmp_path).history[-1]["i64"] == 7


def test_custom_data_without_identity_is_not_resumed_on_other_data(tmp_path, toy_data):
    cfg = TrainConfig(epochs=3, batch_size=16)
    train(FNN, toy_data(seed=0), cfg, tmp_path, progress=False, stop_after=1)
    with pytest.raises(ValueError, match="data"):
        train(FNN, toy_data(seed=1), cfg, tmp_path, progress=False)
    # the same data resumes
    assert train(FNN, toy_data(seed=0), cfg, tmp_path, progress=False).resumed_from == 1


# --------------------------------------------------------------------------- 3. claim 6 statistics


def test_conflict_statistics_leave_out_nets_that_diverged_later():
    rows = []
    for i in range(6):
        rows.append({"status": "finished", "test_acc": 0.8 + 0.01 * i, "a_L_entropy": 0.0})
        rows.append({"status": "finished", "test_acc": 0.2 + 0.01 * i, "a_L_entropy": 1.0 + i})
    rows.append({"status": "diverged", "test_acc": 0.95, "a_L_entropy": 2.0})  # diverged at epoch 5
    stats = fnn_map.conflict_statistics(pd.DataFrame(rows))
    assert stats.n_conflicting == 6 and stats.n_clean == 6


# --------------------------------------------------------------------------- metric inputs


def test_metric_constants_that_round_to_zero_or_inf_in_float32_are_rejected():
    a, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    kw = dict(num_classes=2, lr=1e-3, batch_size=64, weight_amplitude=1.0)
    with pytest.raises(ValueError, match="lr.*float32"):
        bundle_stats(a, y, **dict(kw, lr=1e-50))
    with pytest.raises(ValueError, match="lr.*float32"):
        bundle_stats(a, y, **dict(kw, lr=1e39))
    with pytest.raises(ValueError, match="batch_size.*float32"):
        bundle_stats(a, y, **dict(kw, batch_size=2**160))
    with pytest.raises(ValueError, match="weight_amplitude.*float32"):
        bundle_stats(a, y, **dict(kw, weight_amplitude=1e39))


def test_bad_metric_inputs_give_errors_that_name_them():
    y = torch.tensor([0, 1, 0, 1])
    kw = dict(num_classes=2, lr=1e-3, batch_size=64, weight_amplitude=1.0)
    with pytest.raises(ValueError, match=r"0 values per sample"):
        bundle_stats(torch.zeros(4, 0), y, **kw)
    with pytest.raises(ValueError, match="num_classes.*at most"):
        bundle_stats(torch.randn(4, 3), y, **dict(kw, num_classes=2**62))
    with pytest.raises(ValueError, match="meta device"):
        bundle_stats(torch.empty(4, 3, device="meta"), y, **kw)
    model = build_model(CONV)
    with pytest.raises(ValueError, match=r"taps must be a list of tap names.*\['stem'\]"):
        measure_model(model, torch.randn(4, 1, 8, 8), y, num_classes=3, lr=1e-3, batch_size=64, taps="stem")


def test_a_checkpoint_written_before_a_train_config_field_existed_resumes(tmp_path, toy_data):
    """Fields added to TrainConfig later (device_data, compile, precision) take their defaults
    for checkpoints that do not hold them: the behaviour those runs had."""
    from reproduce.files.checkpoints import load_checkpoint, save_checkpoint

    data, cfg = toy_data(), TrainConfig(epochs=2, batch_size=16)
    train(FNN, data, cfg, tmp_path, progress=False, stop_after=1)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    for name in ("device_data", "compile", "precision"):
        del state["train_config"][name]
    save_checkpoint(tmp_path / "checkpoint.pt", state)
    assert load_run(tmp_path).train_config == cfg
    assert train(FNN, data, cfg, tmp_path, progress=False).resumed_from == 1


def test_a_checkpoint_whose_header_names_a_newer_format_is_refused_and_kept(tmp_path, toy_data):
    from reproduce.files.checkpoints import MAGIC

    data, cfg, _ = _finished(tmp_path, toy_data)
    ckpt = tmp_path / "checkpoint.pt"
    blob = bytearray(ckpt.read_bytes())
    assert bytes(blob[:16]) == MAGIC
    blob[15] = 3  # format 3 of a later version
    ckpt.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="newer version"):
        load_run(tmp_path)
    assert ckpt.read_bytes() == bytes(blob)
