"""The layer packages re-export their modules' public names without hiding a module, and the short
names of ``from reproduce import <name>`` (notebooks and users) import where each concept lives."""

import importlib
import pkgutil
import subprocess
import sys

import pytest

import reproduce

LAYERS = ("config", "files", "data", "models", "metric", "training", "experiments", "sweep", "runner")


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_package_hides_none_of_its_modules(layer):
    package = importlib.import_module(f"reproduce.{layer}")
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"reproduce.{layer}.{info.name}")
        assert getattr(package, info.name) is module, f"reproduce.{layer}.{info.name} is hidden by a name"


def test_the_short_names_import_the_modules_where_the_concepts_live():
    from reproduce import autotune, bundles, lesion, reporting

    assert bundles.bundle_stats.__module__ == "reproduce.metric.bundles"
    assert lesion.__name__ == "reproduce.experiments.lesion" and autotune.search.__module__ == autotune.__name__
    assert reporting.save_figure.__module__ == "reproduce.files.paths"
    assert reporting.over_seeds.__module__ == "reproduce.experiments.claims"
    for name, where in reproduce.MODULES.items():
        assert getattr(reproduce, name) is importlib.import_module(where)
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        reproduce.nonexistent  # noqa: B018


def test_the_package_and_the_runner_start_without_torch_dynamo():
    """``import reproduce`` pins deterministic algorithms without importing ``torch._dynamo``
    (``torch.use_deterministic_algorithms`` imports inductor's config for it: about 1.5 s of
    every process), and the runner's process (``python -m reproduce list / run / status``) stays
    without it too; the pin still holds."""
    code = ("import sys, torch, reproduce\nfrom reproduce.runner import notebooks\n"
            "print('torch._dynamo' in sys.modules, torch.are_deterministic_algorithms_enabled(),"
            " torch.is_deterministic_algorithms_warn_only_enabled())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["False", "True", "True"], out.stderr


def test_compiling_sets_inductors_deterministic_flag_as_torch_would():
    code = ("import reproduce, torch\nfrom reproduce.config import numerics\nnumerics.compile_deterministic()\n"
            "import torch._inductor.config as c\nprint(c.deterministic)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr


def test_environment_sets_and_restores_even_when_the_block_raises(monkeypatch):
    import os

    from reproduce.config.environ import environment

    monkeypatch.setenv("REPRODUCE_T_A", "old")
    monkeypatch.delenv("REPRODUCE_T_B", raising=False)
    with pytest.raises(RuntimeError):
        with environment({"REPRODUCE_T_A": "new", "REPRODUCE_T_B": "set", "REPRODUCE_T_C": None}):
            assert (os.environ["REPRODUCE_T_A"], os.environ["REPRODUCE_T_B"]) == ("new", "set")
            assert "REPRODUCE_T_C" not in os.environ
            raise RuntimeError
    assert os.environ["REPRODUCE_T_A"] == "old" and "REPRODUCE_T_B" not in os.environ


def test_a_notebook_name_is_its_stem_or_a_unique_prefix():
    from reproduce.experiments.notebooks import match_stem

    stems = ["01_a", "02_b", "021_c"]
    assert match_stem("01_a", stems) == "01_a" and match_stem("01", stems) == "01_a"
    assert match_stem("02_b", stems) == "02_b"  # an exact stem, though 021_c also starts with "02"
    with pytest.raises(ValueError, match=r"ambiguous notebook name '02' \(matches 02_b, 021_c\); valid notebooks: 01_a"):
        match_stem("02", stems)
    with pytest.raises(ValueError, match=r"unknown notebook '9'; valid notebooks: 01_a, 02_b, 021_c"):
        match_stem("9", stems)
