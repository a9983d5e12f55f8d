"""Tests of the efficiency measures (parameters, size, peak activation memory, latency)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reproduce.experiments import efficiency as ef


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def test_parameters_and_bytes_of_a_linear_layer():
    m = nn.Linear(10, 5)
    # 10*5 weights + 5 biases, float32
    assert ef.count_all_parameters(m) == 55
    assert ef.model_bytes(m) == 220


def test_bytes_include_buffers():
    m = nn.BatchNorm1d(5)
    # weight+bias: 10 float32; running mean+var: 10 float32; num_batches_tracked: one int64
    assert ef.count_all_parameters(m) == 10
    assert ef.model_bytes(m) == 10 * 4 + 10 * 4 + 8


def test_peak_activation_of_a_known_sequential():
    m = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 3))
    # batch 4: linear1 out 4*5 float32 = 80 B; ReLU out 80 B while linear1's is still referenced by
    # the call -> 160 B; then linear1's is freed and linear2 out (48 B) lives with ReLU's: 128 B.
    assert ef.peak_activation_bytes(m, (10,), batch_size=4) == 160


def test_inplace_relu_adds_no_memory():
    m = nn.Sequential(nn.Linear(10, 5), nn.ReLU(inplace=True), nn.Linear(5, 3))
    # linear1 out (80 B) is overwritten in place; then linear2 out (48 B) lives with it
    assert ef.peak_activation_bytes(m, (10,), batch_size=4) == 80 + 48


def test_views_of_the_input_and_parameters_are_not_activations():
    assert ef.peak_activation_bytes(nn.Flatten(), (3, 4), batch_size=2) == 0
    m = nn.Sequential(nn.Flatten(), nn.Linear(12, 6))
    assert ef.peak_activation_bytes(m, (3, 4), batch_size=2) == 2 * 6 * 4


def test_conv_output_counted_once():
    m = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    # output [2, 2, 4, 4] float32
    assert ef.peak_activation_bytes(m, (1, 4, 4), batch_size=2) == 2 * 2 * 4 * 4 * 4


def test_peak_activation_scales_with_batch_and_restores_mode():
    m = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 3))
    m.train()
    a1 = ef.peak_activation_bytes(m, (10,), batch_size=1)
    a8 = ef.peak_activation_bytes(m, (10,), batch_size=8)
    assert a8 == 8 * a1
    assert m.training


def test_inference_time_and_report():
    m = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 3))
    m.train()
    t = ef.inference_time(m, (10,), batch_size=4, repeats=3, warmup=1)
    assert t > 0 and m.training
    rep = ef.efficiency_report(m, (10,), batch_size=4, repeats=2, warmup=0)
    assert rep["parameters"] == 55 + 18
    assert rep["size_bytes"] == (55 + 18) * 4
    assert rep["size_mb"] == pytest.approx((55 + 18) * 4 / 2**20)
    assert rep["activation_bytes"] == 160
    assert rep["cuda_peak_bytes"] is None
    assert rep["latency_ms"] == pytest.approx(rep["latency_s"] * 1e3)
    assert rep["device"] == "cpu" and rep["batch_size"] == 4


@pytest.mark.parametrize("shape,batch", [((), 4), ((0, 3), 4), ((10,), 0)])
def test_bad_input_raises(shape, batch):
    with pytest.raises(ValueError):
        ef.peak_activation_bytes(nn.Linear(10, 5), shape, batch_size=batch)


def test_bad_repeats_raise():
    with pytest.raises(ValueError, match="repeats"):
        ef.inference_time(nn.Linear(10, 5), (10,), repeats=0)


def test_inference_times_round_robin_one_median_per_model():
    small = nn.Linear(10, 5)
    big = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 3))
    big.train()
    times = ef.inference_times([small, big], [(10,), (10,)], batch_size=4, repeats=3, warmup=1)
    assert len(times) == 2 and all(t > 0 for t in times)
    assert big.training
    with pytest.raises(ValueError, match="input shapes"):
        ef.inference_times([small], [(10,), (10,)])
    rep = ef.efficiency_report(small, (10,), batch_size=4, latency=False)
    assert rep["latency_s"] is None and rep["latency_ms"] is None and rep["parameters"] == 55


@pytest.mark.parametrize("blocks", [(1, 1, 1, 1), (2, 1, 1, 1)])
@pytest.mark.parametrize("kind", ["plain", "residual"])
def test_the_forward_holds_no_more_memory_than_the_nested_expression(kind, blocks):
    """The one forward path (a generator of taps) must not keep intermediates alive: its peak
    activation memory equals that of the block computation written as one nested expression."""
    import torch.nn.functional as F
    from torch import nn

    from reproduce.models.nets import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind, 10, 1, 8, blocks, width=1 / 4)).eval()

    class Nested(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):  # the forward of round 1, before the one-path reshape
            x = self.net.stem(x)
            for block in self.net.blocks:
                b = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x)))))
                if block.shortcut is not None:
                    b = b + block.shortcut(x)
                x = F.relu(b)
            return self.net.fc(x.mean(dim=(2, 3)))

    reference = Nested(model)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)
    assert ef.peak_activation_bytes(model, (1, 8, 8), 64) <= ef.peak_activation_bytes(reference, (1, 8, 8), 64)


# --------------------------------------------------------------------------- multiply-accumulates


def test_macs_of_a_conv_and_a_linear_by_hand():
    m = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 5))
    # conv: 3*4*4 = 48 outputs, each 2*3*3 = 18 MACs -> 864; linear: 5 outputs of 48 MACs -> 240;
    # ReLU, flatten and the biases cost nothing
    assert ef.multiply_accumulates(m, (2, 4, 4)) == 864 + 240


def test_macs_of_a_strided_grouped_conv_and_a_1d_conv():
    # 8x8 -> 4x4 with stride 2: 4*4*4 = 64 outputs, each sees 4/2 = 2 channels of 3x3 -> 18 MACs
    assert ef.multiply_accumulates(nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=2), (4, 8, 8)) == 64 * 18
    # length 10, kernel 3, no padding -> 8 positions * 5 channels, each 2*3 = 6 MACs
    assert ef.multiply_accumulates(nn.Conv1d(2, 5, 3), (2, 10)) == 8 * 5 * 6


def test_macs_count_a_module_once_per_call_and_skip_unused_ones():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.unused = nn.Linear(4, 100)

        def forward(self, x):
            return self.lin(self.lin(x))

    m = Twice()
    m.train()
    assert ef.multiply_accumulates(m, (4,)) == 2 * 16
    assert m.training  # mode restored
    assert ef.multiply_accumulates(m, (4,)) == 32  # hooks removed: no double counting on a second call


@pytest.mark.parametrize("kind,blocks,macs", [
    # width 1/16: stem 4 channels, stage 1 4, stage 2 8; 1x8x8 input
    # stem conv 7x7 stride 2 -> 4x4x4 = 64 outputs * 49 = 3136
    # stage-1 block (4 -> 4, 4x4): two convs of 64 outputs * 4*9 -> 2 * 2304
    # fc 4 -> 10: 40
    ("plain", (1, 0, 0, 0), 3136 + 2 * 2304 + 40),
    ("residual", (1, 0, 0, 0), 3136 + 2 * 2304 + 40),  # identity shortcut: free
    # stage-2 block (4 -> 8, stride 2, 2x2): conv1 32 * 4*9 = 1152, conv2 32 * 8*9 = 2304; fc 8 -> 10: 80
    ("plain", (1, 1, 0, 0), 3136 + 2 * 2304 + 1152 + 2304 + 80),
    # ... and the residual one's 1x1 shortcut conv: 32 * 4 = 128
    ("residual", (1, 1, 0, 0), 3136 + 2 * 2304 + 1152 + 2304 + 128 + 80),
])
def test_macs_of_the_conv_nets_by_hand(kind, blocks, macs):
    from reproduce.models.nets import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind, 10, 1, 8, blocks, width=1 / 16))
    assert ef.multiply_accumulates(model, (1, 8, 8)) == macs
    assert ef.efficiency_report(model, (1, 8, 8), 4, latency=False)["macs"] == macs


def test_macs_bad_shape_raises():
    with pytest.raises(ValueError, match="input_shape"):
        ef.multiply_accumulates(nn.Linear(4, 4), ())
