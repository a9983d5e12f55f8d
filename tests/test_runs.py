"""Runs declared as data: specs are plain, picklable values; training one equals training by hand."""

import pickle

import pytest
import torch

from reproduce import depth_study, fnn_map, lesion, theory
from reproduce.autotune import SearchSpec, search_specs
from reproduce.bundles import BundleCallback
from reproduce.data import load_dataset, measurement_samples
from reproduce.models import conv_config
from reproduce.reporting import ROOT_ENV
from reproduce.runs import DataSpec, Hook, RunSpec, run_state, train_spec
from reproduce.scales import get_scale
from reproduce.training import TrainConfig, run_lock, train


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    return tmp_path


def tiny():
    return get_scale("smoke").replace(epochs=2, train_limit=128, depths=(4,), width=1 / 16)


def test_hook_is_data_and_resolves_by_name():
    h = Hook.to("reproduce.models:blocks_for_depth")
    assert h == Hook("reproduce.models:blocks_for_depth") and hash(h) == hash(pickle.loads(pickle.dumps(h)))
    assert Hook.to("builtins:max", key=abs)(-3, 2) == -3
    assert Hook.to("x:y", b=1, a=2).kwargs == (("a", 2), ("b", 1))  # order does not matter
    with pytest.raises(ValueError, match="module:function"):
        Hook("reproduce.models.blocks_for_depth")


def test_specs_of_every_experiment_pickle_and_name_distinct_folders(root):
    scale = tiny()
    specs = (depth_study.run_specs(scale) + fnn_map.run_specs(scale)
             + [theory.worst_case_spec(scale, collapse=k) for k in (None, 1)]
             + [lesion.lesion_spec(scale, lesion.LesionConfig.from_scale(scale))])
    assert all(pickle.loads(pickle.dumps(s)) == s for s in specs)
    folders = [s.run_dir for s in specs]
    assert len(set(folders)) == len(folders)
    assert all(f.parent.parent == root / "results" / "smoke" for f in folders)
    # anything that changes the run changes its folder
    a = depth_study.conv_spec(scale, "plain", 4)
    assert a.run_dir != depth_study.conv_spec(scale.replace(epochs=3), "plain", 4).run_dir
    assert a.run_dir != depth_study.conv_spec(scale, "plain", 4, every_tap=False).run_dir
    assert a.run_dir != depth_study.conv_spec(scale, "plain", 4, seed=1).run_dir
    assert a.run_dir == depth_study.conv_spec(scale, "plain", 4).run_dir
    searches = search_specs(scale)
    assert len(searches) == scale.autotune_seeds and all(isinstance(s, SearchSpec) for s in searches)
    assert pickle.loads(pickle.dumps(searches[0])) == searches[0]


def test_unknown_dataset_in_a_spec_names_the_choices():
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*digits"):
        conv_config("plain", 4, DataSpec("nope"), width=1.0)


def test_train_spec_equals_training_by_hand_and_state_follows(root):
    scale = tiny()
    spec = depth_study.conv_spec(scale, "residual", 4, seed=1)
    assert run_state(spec) == "missing"
    data = load_dataset("digits", seed=1, train_limit=128)
    # by hand: the same configs and the same callback, in another folder
    x, y = measurement_samples(data, scale.sample_size, 1)
    cb = BundleCallback(x, y, num_classes=10, lr=scale.lr, batch_size=scale.batch_size)
    by_hand = train(spec.model, data, spec.train, root / "by-hand", callbacks=[cb], progress=False)
    # interrupted, then finished through the spec (loading its own data)
    train(spec.model, data, spec.train, spec.run_dir, callbacks=[cb], progress=False, stop_after=1)
    assert run_state(spec) == "partial"
    with run_lock(spec.run_dir):
        assert run_state(spec) == "running"
    run = spec.run()
    assert run_state(spec) == "finished" and run.resumed_from == 1
    assert all(torch.equal(a, b) for a, b in zip(run.model.state_dict().values(), by_hand.model.state_dict().values()))
    assert [r["bundles"] for r in run.history] == [r["bundles"] for r in by_hand.history]


def test_train_spec_refuses_other_data(root):
    spec = depth_study.conv_spec(tiny(), "plain", 4, seed=0)
    with pytest.raises(ValueError, match="not the data of run"):
        train_spec(spec, data=load_dataset("digits", seed=1, train_limit=128), progress=False)


def test_worst_case_spec_collapses_through_its_init_hook(root):
    scale = tiny().replace(fnn_epochs=1, fnn_widths=(4,))
    spec = theory.worst_case_spec(scale, collapse=1, depth=2, epochs=1)
    data = spec.data.load()
    run = theory.run_worst_case(spec, data, progress=False)
    assert run.collapse == 1 and run.history[-1]["dead"] is True
    assert torch.all(run.model.hidden[1].weight == 0)


def test_naming_a_run_folder_does_not_create_it(root):
    spec = depth_study.conv_spec(tiny(), "plain", 4)
    assert not spec.run_dir.exists() and run_state(spec) == "missing"
    assert not (root / "results").exists()
