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


def test_importing_one_study_does_not_import_torch_dynamo():
    """``torch._dynamo`` (about a second) comes in only with the study that compiles (auto-tune)."""
    code = ("import sys, reproduce\nfrom reproduce import lesion, depth_study, theory, fnn_map, reporting\n"
            "from reproduce.runner import notebooks\nprint('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
