import numpy as np
import pytest

from reproduce.training.loop import TrainConfig

from reproduce.models.nets import DEPTH_TABLE
from reproduce.config.scales import SCALE_ENV, SCALE_NAMES, SCALES, get_scale, resolve_scale


def test_unknown_scale_names_choices():
    with pytest.raises(ValueError, match=r"unknown scale 'laptop'.*smoke, cpu, long, paper, gpu"):
        get_scale("laptop")


def test_environment_overrides_the_parameter(monkeypatch):
    monkeypatch.setenv(SCALE_ENV, "smoke")
    assert resolve_scale("cpu").name == "smoke"
    monkeypatch.setenv(SCALE_ENV, "")
    assert resolve_scale("cpu").name == "cpu"
    monkeypatch.setenv(SCALE_ENV, "huge")
    with pytest.raises(ValueError, match="'huge'"):
        resolve_scale("cpu")


def test_replace_checks_field_names():
    cpu = get_scale("cpu")
    assert cpu.replace(datasets=("mnist",)).dataset == "mnist"
    assert cpu.dataset == "digits"  # presets are immutable
    with pytest.raises(ValueError, match=r"unknown preset field\(s\) 'epoch'; valid fields are datasets, width"):
        cpu.replace(epoch=3)


@pytest.mark.parametrize("name", list(SCALES))
def test_presets_use_the_depth_table(name):
    P = SCALES[name]
    assert set(P.depths) <= set(DEPTH_TABLE)
    assert set(P.autotune_baseline_depths) <= set(DEPTH_TABLE)
    assert P.lesion_depth in DEPTH_TABLE and P.early_depth in DEPTH_TABLE
    assert 1 <= P.last_epochs <= P.epochs and P.autotune_check_epochs <= P.autotune_epochs
    assert name in P.describe()


def test_paper_preset_matches_the_paper():
    P = get_scale("paper")
    assert P.width == 1.0 and P.epochs == 120 and P.batch_size == 64 and P.lr == 1e-3
    assert P.autotune_blocks == (3, 12, 41, 3) and P.autotune_check_epochs == 10
    assert len(P.fnn_widths) * len(P.fnn_depths) == 176  # the paper's 176 networks
    assert set(P.datasets) == {"mnist", "cifar10", "svhn", "imagenette"}


def test_an_environment_override_of_the_parameter_is_announced(monkeypatch, capsys):
    monkeypatch.setenv(SCALE_ENV, "smoke")
    assert resolve_scale("cpu").name == "smoke"
    assert "REPRODUCE_SCALE='smoke' overrides the notebook parameter scale='cpu'" in capsys.readouterr().out
    assert resolve_scale("smoke").name == "smoke"
    assert capsys.readouterr().out == ""  # no note when they agree


def test_long_is_cpu_with_the_papers_optimiser_steps():
    cpu, long = get_scale("cpu"), get_scale("long")
    assert (long.width, long.datasets, long.lesion_depth, long.autotune_blocks) == (
        cpu.width, cpu.datasets, cpu.lesion_depth, cpu.autotune_blocks)
    # digits: 1,437 training images -> 22 full batches of 64; the paper: 50,000 // 64 = 781 steps per epoch
    steps_per_epoch = (1437 // long.batch_size) * long.passes
    assert abs(steps_per_epoch - 50_000 // 64) / 781 < 0.02
    assert abs(long.lesion_epochs * steps_per_epoch - 120 * 781) / (120 * 781) < 0.02
    assert long.autotune_check_epochs == 10 and long.autotune_epochs == 120
    assert long.train_options()["passes"] == 36


def test_released_measurement_and_bookkeeping_in_every_preset():
    for name in SCALE_NAMES:
        s = get_scale(name)
        assert s.measurement == "fresh"
        assert s.precision == "float32"
        assert s.last_epochs == (1 if name == "smoke" else 4)
    assert get_scale("cpu").repeats >= 3  # several seeds behind every verdict at cpu


def test_seeds_are_checked_in_one_place():
    from reproduce.config.seeds import check_seeds, derive_seed

    assert check_seeds(range(3)) == (0, 1, 2) and check_seeds([np.int64(4)]) == (4,)
    for bad, message in ((5, "non-empty sequence"), ((), "at least one seed"), ((1, 1), "distinct"),
                         ((-1,), "int >= 0, got -1"), ((True,), "int >= 0, got True"), (("0",), "int >= 0"),
                         # the data split (scikit-learn's random_state) takes seeds below 2**32
                         ((2**32,), f"at most {2**32 - 1} .*, got {2**32} in")):
        with pytest.raises(ValueError, match=message):
            check_seeds(bad)
    # the epoch stream of round 2, by hand: (seed * 1_000_003 + epoch * 7_919 + 12_345) mod (2**63 - 1)
    assert derive_seed(3, 7, "epoch") == 3 * 1_000_003 + 7 * 7_919 + 12_345
    assert derive_seed(2**62, 1, "epoch") == (2**62 * 1_000_003 + 7_919 + 12_345) % (2**63 - 1)
    with pytest.raises(ValueError, match="unknown seed stream 'nope'; valid choices are epoch, torchvision-epoch"):
        derive_seed(0, 0, "nope")


def test_the_released_fnn_length_on_digits_counts_the_released_steps():
    """The released FNN scripts: 10 epochs of MNIST (60,000 images) at batch 64, the last partial
    batch kept: 10 x 938 = 9,380 steps, measured after each epoch. On digits: 10 epochs too, each
    of the fewest whole passes that are not fewer steps, counted by the training loop's own rule
    (drop_last, passes). The cpu preset trains exactly that length."""
    from reproduce.config.scales import CPU_RELEASED_FNN_LENGTH, RELEASED_FNN_STEPS
    from reproduce.data.datasets import dataset_train_size
    from reproduce.experiments.fnn_map import train_config
    from reproduce.experiments.theory import worst_case_spec

    assert RELEASED_FNN_STEPS == 9_380  # 60,000 / 64 = 937.5 -> 938 batches, x 10 epochs
    cpu = get_scale("cpu")
    assert (cpu.fnn_epochs, cpu.fnn_passes) == (10, 43)
    released = cpu.replace(**CPU_RELEASED_FNN_LENGTH)
    assert released == cpu
    tcfg = train_config(released, seed=0)
    per_pass = TrainConfig(epochs=1, batch_size=64).steps_per_epoch(dataset_train_size("digits"))
    assert per_pass == 22  # 1,437 // 64 full batches, the 29 left over dropped
    assert (tcfg.epochs, tcfg.passes) == (10, 43)
    per_epoch = tcfg.steps_per_epoch(dataset_train_size("digits"))
    assert per_epoch == 43 * 22 == 946
    assert 10 * 42 * 22 < 9_380 <= tcfg.epochs * per_epoch == 9_460
    # the worst case trains 3 x as many epochs of the same length; the conv nets keep one pass
    assert worst_case_spec(released, collapse=1).train.passes == 43
    assert released.train_options()["passes"] == 1
    # long's FNNs as before (120 epochs of 36 passes)
    long = get_scale("long")
    assert (train_config(long, seed=0).epochs, train_config(long, seed=0).passes) == (120, 36)
    assert get_scale("smoke").fnn_epochs == 2  # smoke's run folders (and the round-2 fixtures) keep their names
