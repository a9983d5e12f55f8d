import json

import pytest
import torch

from reproduce.models.nets import ModelConfig
from reproduce.training.loop import Lookahead, TrainConfig, final_test_accuracy, load_run, train


FNN = ModelConfig("fnn", 3, 1, 4, fnn_width=8, fnn_depth=2)
CONV = ModelConfig("residual", 3, 1, 4, (1, 1, 0, 0), width=1 / 16)


@pytest.mark.parametrize("mcfg", [FNN, CONV], ids=["fnn", "residual"])
def test_interrupted_run_resumes_to_identical_weights(tmp_path, mcfg, same_weights, toy_data):
    data, cfg = toy_data(size=4), TrainConfig(epochs=4, batch_size=16, seed=3)
    straight = train(mcfg, data, cfg, tmp_path / "a", progress=False)
    assert straight.status == "finished" and straight.epochs_done == 4

    part = train(mcfg, data, cfg, tmp_path / "b", progress=False, stop_after=2)  # "killed" after epoch 2
    assert part.status == "running" and part.epochs_done == 2
    assert len(json.loads((tmp_path / "b" / "run.json").read_text())) > 0
    resumed = train(mcfg, data, cfg, tmp_path / "b", progress=False)
    assert resumed.resumed_from == 2 and resumed.status == "finished"
    assert same_weights(straight.model, resumed.model)
    assert [r["test_acc"] for r in straight.history] == [r["test_acc"] for r in resumed.history]
    # the metrics file holds one JSON line per epoch
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    # (epoch 0: the untrained net, recorded before training)
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1, 2, 3, 4]


def test_finished_run_is_reused_not_retrained(tmp_path, same_weights, toy_data):
    data, cfg = toy_data(size=4), TrainConfig(epochs=2, batch_size=16)
    first = train(FNN, data, cfg, tmp_path, progress=False)
    calls = []
    again = train(FNN, data, cfg, tmp_path, progress=False, callbacks=[lambda m, e, r: calls.append(e)])
    assert calls == [] and again.resumed_from == 2
    assert same_weights(first.model, again.model)
    loaded = load_run(tmp_path)
    assert loaded.status == "finished" and same_weights(first.model, loaded.model)


def test_truncated_checkpoint_is_recomputed(tmp_path, same_weights, toy_data):
    data, cfg = toy_data(size=4), TrainConfig(epochs=2, batch_size=16)
    reference = train(FNN, data, cfg, tmp_path / "ref", progress=False)
    train(FNN, data, cfg, tmp_path / "run", progress=False, stop_after=1)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    blob = ckpt.read_bytes()
    ckpt.write_bytes(blob[: len(blob) // 2])  # a crash mid-write of a non-atomic writer
    with pytest.warns(RuntimeWarning, match="truncated"):
        rerun = train(FNN, data, cfg, tmp_path / "run", progress=False)
    assert rerun.resumed_from == 0 and rerun.status == "finished"
    assert same_weights(reference.model, rerun.model)
    assert load_run(tmp_path / "run").epochs_done == 2


def test_non_finite_loss_is_recorded_as_diverged(tmp_path, toy_data):
    # a learning rate far too large: weights and then the loss blow up in the first epoch
    res = train(FNN, toy_data(size=4), TrainConfig(epochs=3, batch_size=16, lr=1e6), tmp_path, progress=False)
    assert res.status == "diverged" and res.diverged_epoch == 1
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_epoch"] == 1


def test_divergence_in_a_later_epoch(tmp_path, toy_data):
    def poison(model, epoch, record):
        if epoch == 1:
            with torch.no_grad():
                next(model.parameters()).fill_(float("inf"))

    res = train(FNN, toy_data(size=4), TrainConfig(epochs=4, batch_size=16), tmp_path, progress=False,
                callbacks=[poison])
    assert res.status == "diverged" and res.diverged_epoch == 2
    assert final_test_accuracy(res.history, 3) == res.history[0]["test_acc"]
    # reloading a diverged run does not train again
    assert train(FNN, toy_data(size=4), TrainConfig(epochs=4, batch_size=16), tmp_path, progress=False).status == "diverged"


def test_callback_can_stop_and_add_metrics(tmp_path, toy_data):
    def cb(model, epoch, record):
        record["custom"] = epoch * 10
        if epoch == 2:
            record["stop"] = "planted"

    res = train(FNN, toy_data(size=4), TrainConfig(epochs=5, batch_size=16), tmp_path, progress=False, callbacks=[cb])
    assert res.status == "stopped" and res.stop_reason == "planted" and res.epochs_done == 2
    assert [r["custom"] for r in res.history] == [0, 10, 20]  # callbacks also see epoch 0


def test_other_config_in_folder_is_refused(tmp_path, toy_data):
    train(FNN, toy_data(size=4), TrainConfig(epochs=1, batch_size=16), tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"different configuration.*epochs"):
        train(FNN, toy_data(size=4), TrainConfig(epochs=2, batch_size=16), tmp_path, progress=False)


def test_lookahead_syncs_every_k_steps():
    # inner SGD with lr 1 on loss = sum(w) moves w by -1 per step; lookahead k=2, alpha=0.5
    w = torch.nn.Parameter(torch.zeros(1))
    opt = Lookahead(torch.optim.SGD([w], lr=1.0), k=2, alpha=0.5)
    seen = []
    for _ in range(4):
        opt.zero_grad()
        w.sum().backward()
        opt.step()
        seen.append(w.item())
    # step1: -1; step2: fast -2 -> slow 0 + 0.5*(-2 - 0) = -1; step3: -2; step4: fast -3 -> slow -1 + 0.5*(-3+1) = -2
    assert seen == [-1.0, -1.0, -2.0, -2.0]


def test_bad_train_config():
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(epochs=1, lr=0)


def test_radam_decoupled_weight_decay_is_used():
    """``optimizer="radam-torch"`` (round 1-3's optimiser; since round 4 not the default) is torch's
    RAdam with decoupled weight decay; the default is TF-Addons' (test_radam.py)."""
    from reproduce.training.loop import make_optimizer
    from reproduce.training.radam import RectifiedAdam

    model = torch.nn.Linear(2, 2)
    opt = make_optimizer(model, TrainConfig(epochs=1, optimizer="radam-torch"))
    group = opt.param_groups[0]
    assert isinstance(opt.optimizer, torch.optim.RAdam)
    assert group["decoupled_weight_decay"] and group["weight_decay"] == 1e-2 and group["eps"] == 1e-6
    released = make_optimizer(model, TrainConfig(epochs=1)).optimizer
    assert isinstance(released, RectifiedAdam)
    assert released.param_groups[0]["weight_decay"] == 1e-2 and released.param_groups[0]["eps"] == 1e-6


def test_numpy_values_from_callbacks_survive_resume(tmp_path, toy_data):
    import numpy as np

    def cb(model, epoch, record):
        record["np_mean"] = np.mean([epoch, epoch + 1])  # a numpy float64, not a Python float

    cfg = TrainConfig(epochs=3, batch_size=16)
    train(FNN, toy_data(size=4), cfg, tmp_path, progress=False, callbacks=[cb], stop_after=1)
    resumed = train(FNN, toy_data(size=4), cfg, tmp_path, progress=False, callbacks=[cb])
    assert resumed.resumed_from == 1  # the checkpoint was readable, not recomputed
    assert [r["np_mean"] for r in resumed.history] == [0.5, 1.5, 2.5, 3.5]
    assert all(type(r["np_mean"]) is float for r in resumed.history)


def test_callback_value_json_cannot_hold_fails_at_once(tmp_path, toy_data):
    def cb(model, epoch, record):
        record["tensor"] = torch.zeros(2)

    with pytest.raises(TypeError, match="not JSON serializable"):
        train(FNN, toy_data(size=4), TrainConfig(epochs=2, batch_size=16), tmp_path, progress=False, callbacks=[cb])


def test_other_data_in_folder_is_refused(tmp_path):
    from reproduce.data.datasets import load_dataset

    cfg = TrainConfig(epochs=1, batch_size=32)
    mcfg = ModelConfig("fnn", 10, 1, 8, fnn_width=8, fnn_depth=1)
    train(mcfg, load_dataset("digits", flat=True, train_limit=100), cfg, tmp_path, progress=False)
    # same configs, same dataset name, but another subset of it: no silent reuse
    with pytest.raises(ValueError, match=r"different configuration.*'train_limit': 120"):
        train(mcfg, load_dataset("digits", flat=True, train_limit=120), cfg, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"different configuration.*'seed': 1"):
        train(mcfg, load_dataset("digits", flat=True, train_limit=100, seed=1), cfg, tmp_path, progress=False)
    again = train(mcfg, load_dataset("digits", flat=True, train_limit=100), cfg, tmp_path, progress=False)
    assert again.resumed_from == 1


# --- the released bookkeeping (defaults) ------------------------------------------------------


def test_released_bookkeeping_is_the_default():
    cfg = TrainConfig(epochs=1)
    assert (cfg.drop_last, cfg.measure_start, cfg.precision) == (True, True, "float32")


def test_drop_last_takes_floor_n_over_batch_steps(toy_data):
    from reproduce.training.loop import _batches

    # 96 samples at batch 40: two full batches (the last 16 samples are left out) with drop_last
    data = toy_data(size=4)
    sizes = {drop: [len(y) for _, y in _batches(data.train, 40, shuffle=True, generator=torch.Generator().manual_seed(0),
                                                device=torch.device("cpu"), drop_last=drop)]
             for drop in (True, False)}
    assert sizes[True] == [40, 40] and sizes[False] == [40, 40, 16]
    # the training loop takes exactly those steps: record the batch size of every training-mode forward
    for drop in (True, False):
        trained = []

        def watch(model, trained=trained):
            model.register_forward_pre_hook(lambda m, args: trained.append(len(args[0])) if m.training else None)

        train(FNN, data, TrainConfig(epochs=1, batch_size=40, drop_last=drop), progress=False, init_fn=watch)
        assert sorted(trained) == sorted(sizes[drop])
    with pytest.raises(ValueError, match="fewer than one batch of 200"):
        train(FNN, toy_data(size=4), TrainConfig(epochs=1, batch_size=200), progress=False)


def test_epoch_zero_records_the_untrained_net(tmp_path, same_weights, toy_data):
    from reproduce.models.nets import build_model
    from reproduce.training.loop import evaluate

    data = toy_data(size=4)
    seen = []
    res = train(FNN, data, TrainConfig(epochs=2, batch_size=16, seed=5), tmp_path, progress=False,
                callbacks=[lambda model, epoch, record: seen.append((epoch, model.training))])
    torch.manual_seed(5)  # the run's initialisation, rebuilt by hand
    loss, acc = evaluate(build_model(FNN), data.test)
    first = res.history[0]
    assert first["epoch"] == 0 and first["test_acc"] == acc and first["test_loss"] == pytest.approx(loss, rel=1e-12)
    assert "train_loss_running" not in first
    assert [e for e, _ in seen] == [0, 1, 2]
    # without measure_start the history starts at epoch 1, and the weights are the same (epoch 0
    # draws nothing from the training RNG)
    plain = train(FNN, data, TrainConfig(epochs=2, batch_size=16, seed=5, measure_start=False), progress=False)
    assert [r["epoch"] for r in plain.history] == [1, 2]
    assert same_weights(plain.model, res.model)


def test_final_test_accuracy_leaves_out_epoch_zero():
    history = [{"epoch": 0, "test_acc": 0.1}, {"epoch": 1, "test_acc": 0.5}, {"epoch": 2, "test_acc": 0.7}]
    assert final_test_accuracy(history, 4) == pytest.approx(0.6)
    assert final_test_accuracy(history, 1) == pytest.approx(0.7)


def test_checkpoints_without_the_new_fields_keep_their_old_behaviour():
    from reproduce.training.loop import _model_config_from_dict, _train_config_from_dict

    old_t = _train_config_from_dict({"epochs": 3})
    assert old_t.drop_last is False and old_t.measure_start is False
    old_m = _model_config_from_dict({"kind": "plain", "num_classes": 10, "blocks": [1, 1, 1, 1]})
    assert (old_m.bn_momentum, old_m.bn_eps, old_m.init, old_m.conv_bias) == (0.1, 1e-5, "he-uniform", False)


def test_passes_make_an_epoch_of_several_shuffled_passes(toy_data):
    data = toy_data(size=4)
    seen = []

    def watch(model):
        model.register_forward_pre_hook(lambda m, args: seen.append(len(args[0])) if m.training else None)

    res = train(FNN, data, TrainConfig(epochs=2, batch_size=40, passes=3), progress=False, init_fn=watch)
    # 96 samples at batch 40 with the partial batch dropped: 2 steps a pass, 3 passes an epoch, 2 epochs
    assert seen == [40] * 12 and [r["epoch"] for r in res.history] == [0, 1, 2]
    with pytest.raises(ValueError, match="passes must be an int >= 1, got 0"):
        TrainConfig(epochs=1, passes=0)


def test_run_records_its_numeric_environment_and_refuses_another(tmp_path, toy_data):
    from reproduce.config import numerics
    from reproduce.training.loop import NumericsMismatchError

    cfg = TrainConfig(epochs=1, batch_size=16)
    train(FNN, toy_data(size=4), cfg, tmp_path, progress=False)
    recorded = json.loads((tmp_path / "run.json").read_text())["numerics"]
    here = numerics.environment()
    assert recorded["threads"] == here["threads"] and recorded["cpu_capability"] == here["cpu_capability"]
    assert recorded["device"] == "cpu" and recorded["torch"] == torch.__version__
    # the same environment: the finished run is reused
    assert train(FNN, toy_data(size=4), cfg, tmp_path, progress=False).status == "finished"
    # plant another environment in the checkpoint (as if made on an AVX-512 machine with 2 threads)
    from reproduce.files.checkpoints import load_checkpoint, save_checkpoint

    state = load_checkpoint(tmp_path / "checkpoint.pt")
    state["numerics"] = {**state["numerics"], "cpu_capability": "AVX512", "threads": 2}
    save_checkpoint(tmp_path / "checkpoint.pt", state)
    with pytest.raises(NumericsMismatchError, match=r"cpu_capability: AVX512 \(stored\) vs .* \(now\).*threads: 2"):
        train(FNN, toy_data(size=4), cfg, tmp_path, progress=False)


def test_a_run_stopped_after_epoch_zero_resumes_to_the_same_run(tmp_path, same_weights, toy_data):
    cfg = TrainConfig(epochs=2, batch_size=16, seed=1)
    straight = train(CONV, toy_data(size=4), cfg, tmp_path / "a", progress=False)
    part = train(CONV, toy_data(size=4), cfg, tmp_path / "b", progress=False, stop_after=0)  # only epoch 0 saved
    assert part.status == "running" and [r["epoch"] for r in part.history] == [0]
    resumed = train(CONV, toy_data(size=4), cfg, tmp_path / "b", progress=False)
    assert [r["epoch"] for r in resumed.history] == [0, 1, 2]  # epoch 0 recorded once
    assert same_weights(straight.model, resumed.model)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(straight.history) == strip(resumed.history)


def test_sequence_targets_are_counted_per_position():
    """A sequence target [B, T] with logits [B, C, T] (a language model's next tokens): the loss and
    accuracy of ``evaluate`` and of an epoch are per position, not per sequence (hand-computed)."""
    from torch import nn
    from torch.utils.data import TensorDataset

    from reproduce.training.loop import evaluate, fit

    class Fixed(nn.Module):
        """Logits [B, 2, 3] that predict class 1 at positions 0 and 1, class 0 at position 2, by a margin log 3."""

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))

        def forward(self, x):
            one = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, -1.0]]) * torch.log(torch.tensor(3.0)) / 1.0
            return (one + 0 * self.w).expand(x.shape[0], 2, 3)

    x = torch.zeros(4, 1)
    y = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1]])  # right: 3 + 2 + 1 + 2 = 8 of 12
    loss, acc = evaluate(Fixed(), TensorDataset(x, y))
    # each position: p(predicted) = 3/4 when right, 1/4 when wrong (logits 0 and log 3)
    expected = (8 * -torch.log(torch.tensor(0.75)) + 4 * -torch.log(torch.tensor(0.25))) / 12
    assert acc == pytest.approx(8 / 12)
    assert loss == pytest.approx(float(expected), rel=1e-6)
    data = type("D", (), {"train": TensorDataset(x, y), "train_eval": TensorDataset(x, y), "test": TensorDataset(x, y),
                          "name": "seq"})()
    run = fit(Fixed(), data, TrainConfig(epochs=1, batch_size=4, lr=1e-3, seed=0, measure_start=False), progress=False)
    record = run.history[-1]
    assert record["train_acc_running"] == pytest.approx(8 / 12)
    assert record["train_loss_running"] == pytest.approx(float(expected), rel=1e-6)
