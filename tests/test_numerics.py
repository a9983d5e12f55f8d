"""The pinned numeric environment (reproduce.config.numerics), each case in a fresh subprocess: the
policy is applied at ``import reproduce`` and what torch latches cannot be undone in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reproduce.config import numerics

ROOT = Path(__file__).resolve().parents[1]
_CONTROLLED = ("REPRODUCE_NUMERICS", "REPRODUCE_THREADS", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
               "DNNL_MAX_CPU_ISA", "MKL_CBWR", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with the numerics variables cleared, then ``env``."""
    base = {k: v for k, v in os.environ.items() if k not in _CONTROLLED}
    base["PYTHONPATH"] = str(ROOT) + os.pathsep + base.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def _json(code: str, **env: str) -> dict:
    proc = _python(code, **env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


_ENV = "import json, reproduce, reproduce.config.numerics as n; print(json.dumps(n.environment()))"
# torch alone, asked nothing: the machine's own capability and default thread count
_NATIVE = ("import json, torch; print(json.dumps({'cpu_capability': torch.backends.cpu.get_cpu_capability(), "
           "'threads': torch.get_num_threads()}))")


@pytest.fixture(scope="module")
def bare_torch() -> dict:
    return _json(_NATIVE, OMP_NUM_THREADS="2")


def test_import_pins_avx2_one_thread_deterministic():
    env = _json(_ENV, OMP_NUM_THREADS="2")
    assert env["policy"] == "pinned"
    assert env["cpu_capability"] == "AVX2"
    assert env["onednn_isa"] == "AVX2"
    assert env["mkl_cbwr"] == "AVX2"
    assert env["threads"] == 1
    assert env["deterministic"] is True
    assert json.loads(json.dumps(env)) == env


def test_pinned_isa_reaches_onednn():
    code = ("import reproduce, torch; "
            "torch.nn.functional.conv2d(torch.randn(2, 3, 16, 16), torch.randn(4, 3, 3, 3))")
    proc = _python(code, ONEDNN_VERBOSE="1")
    assert proc.returncode == 0, proc.stderr
    isa = [line for line in proc.stdout.splitlines() if ",isa:" in line]
    assert isa and "AVX2" in isa[0] and "AVX-512" not in isa[0], proc.stdout[:2000]


def test_native_leaves_capability_and_threads(bare_torch):
    env = _json(_ENV, REPRODUCE_NUMERICS="native", OMP_NUM_THREADS="2")
    assert env["policy"] == "native"
    assert env["threads"] == bare_torch["threads"] == 2
    assert env["onednn_isa"] == "native" and env["mkl_cbwr"] == "native"
    assert env["deterministic"] is False
    assert env["cpu_capability"] == bare_torch["cpu_capability"]
    if bare_torch["cpu_capability"] != "AVX512":
        pytest.skip(f"this machine's native capability is {bare_torch['cpu_capability']}, not AVX512")
    assert env["cpu_capability"] == "AVX512"


def test_policy_value_is_case_and_space_tolerant():
    assert _json(_ENV, REPRODUCE_NUMERICS=" Pinned ")["cpu_capability"] == "AVX2"


def test_bad_policy_is_a_clear_error():
    proc = _python("import reproduce", REPRODUCE_NUMERICS="fast")
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ValueError") and "'fast'" in last and "pinned" in last and "native" in last


def test_bad_thread_count_is_a_clear_error():
    proc = _python("import reproduce", REPRODUCE_THREADS="zero")
    assert proc.returncode != 0
    assert "REPRODUCE_THREADS='zero'" in proc.stderr and "positive integer" in proc.stderr


def test_thread_override_wins_with_a_warning():
    proc = _python(_ENV, REPRODUCE_THREADS="2")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["threads"] == 2
    assert "REPRODUCE_THREADS=2 wins" in proc.stderr


def test_user_capability_wins_and_is_recorded():
    proc = _python(_ENV, ATEN_CPU_CAPABILITY="default")
    assert proc.returncode == 0, proc.stderr
    env = json.loads(proc.stdout.splitlines()[-1])
    assert env["cpu_capability"] == "DEFAULT"
    assert env["onednn_isa"] == "AVX2" and env["threads"] == 1
    assert "ATEN_CPU_CAPABILITY=default is already set" in proc.stderr


def test_old_onednn_name_counts_as_a_user_setting():
    proc = _python(_ENV, DNNL_MAX_CPU_ISA="SSE41")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["onednn_isa"] == "SSE41"
    assert "DNNL_MAX_CPU_ISA=SSE41 is already set" in proc.stderr


def test_torch_imported_first_but_idle_is_still_pinned():
    proc = _python("import torch\n" + _ENV)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["cpu_capability"] == "AVX2"
    assert "NumericsWarning" not in proc.stderr


def test_torch_computed_first_warns_once(bare_torch):
    if bare_torch["cpu_capability"] == "AVX2":
        pytest.skip("native capability is AVX2: a capability fixed too early is indistinguishable")
    code = "import torch; torch.ones(64).add_(1)\n" + _ENV + "\nn.pin(); n.pin()"
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["cpu_capability"] == bare_torch["cpu_capability"]
    assert proc.stderr.count("torch was imported") == 1, proc.stderr


def test_describe_names_the_state_and_the_opt_out():
    proc = _python("import reproduce.config.numerics as n; print(n.describe())")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ("numerics: pinned (AVX2, oneDNN AVX2, MKL AVX2, 1 thread, deterministic); "
                                   "set REPRODUCE_NUMERICS=native to opt out")


_STORED = {"torch": "2.14.1", "cpu_capability": "AVX2", "onednn_isa": "AVX2", "mkl_cbwr": "AVX2",
           "threads": 1, "deterministic": True, "policy": "pinned", "machine": "x86_64", "device": "cpu"}


def test_differences_none_when_equal_and_ignores_machine_and_policy():
    other_box = {**_STORED, "machine": "AMD64", "policy": "native"}
    assert numerics.differences(_STORED, other_box) == []


def test_differences_lists_each_numeric_change():
    now = {**_STORED, "cpu_capability": "AVX512", "threads": 2, "device": "cuda:0"}
    assert numerics.differences(_STORED, now) == [
        "cpu_capability: AVX2 (stored) vs AVX512 (now)",
        "threads: 1 (stored) vs 2 (now)",
        "device: cpu (stored) vs cuda:0 (now)",
    ]


def test_differences_missing_key_and_missing_record():
    now = {k: v for k, v in _STORED.items() if k != "device"}
    assert numerics.differences(_STORED, now) == ["device: cpu (stored) vs not recorded (now)"]
    assert numerics.differences(None, _STORED) == [
        "no numeric environment recorded (run made before numerics were recorded)"]
    with pytest.raises(TypeError, match="saved must be a dict"):
        numerics.differences("AVX2", _STORED)  # type: ignore[arg-type]


_TRAIN = """
import hashlib, reproduce, torch, json
import reproduce.config.numerics as n
from reproduce.models.nets import ModelConfig, build_model
torch.manual_seed(0)
model = build_model(ModelConfig("plain", 10, 1, 8, (1, 1, 1, 1), width=1 / 8))
g = torch.Generator().manual_seed(1)
x, y = torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g)
# SGD with momentum 0.9 written out: constructing torch.optim.SGD imports torch._dynamo (~2 CPU-s
# in each of these fresh interpreters), and the optimiser is not what this test is about
params, momenta = list(model.parameters()), None
for _ in range(5):
    model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    with torch.no_grad():
        grads = [p.grad for p in params]
        momenta = [gr.clone() for gr in grads] if momenta is None else [m.mul_(0.9).add_(gr) for m, gr in zip(momenta, grads)]
        for p, m in zip(params, momenta):
            p.add_(m, alpha=-0.1)
h = hashlib.sha256()
for t in model.state_dict().values():
    h.update(t.detach().contiguous().numpy().tobytes())
print(json.dumps({"hash": h.hexdigest(), "capability": n.environment()["cpu_capability"]}))
"""


def test_tiny_training_is_reproducible_when_pinned(bare_torch):
    a = _json(_TRAIN, OMP_NUM_THREADS="2")  # torch would use 2 threads; the pin makes it 1
    b = _json(_TRAIN)
    assert a["capability"] == b["capability"] == "AVX2"
    assert a["hash"] == b["hash"]
    if bare_torch["cpu_capability"] != "AVX512":
        pytest.skip(f"native capability {bare_torch['cpu_capability']}: no AVX-512 run to tell apart")
    # the same single thread with the machine's AVX-512 kernels computes other weights: the
    # instruction set alone changes the bits (found on every run on an AVX-512 machine)
    native = _json(_TRAIN, REPRODUCE_NUMERICS="native", REPRODUCE_THREADS="1")
    assert native["capability"] == "AVX512"
    assert native["hash"] != a["hash"]


def test_side_by_side_threads_share_the_cores_under_native_only(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setenv("REPRODUCE_NUMERICS", "native")
    assert [numerics.side_by_side_threads(n) for n in (1, 2, 3, 16)] == [8, 4, 2, 1]
    monkeypatch.setenv("REPRODUCE_NUMERICS", "pinned")
    assert numerics.side_by_side_threads(2) is None
