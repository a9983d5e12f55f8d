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
