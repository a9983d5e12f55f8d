"""TF-Addons' RectifiedAdam (reproduce.training.radam) against updates computed by hand from its
formulas with plain Python floats, on a scalar parameter with loss p**2 / 2 (gradient p)."""

import math

import pytest
import torch

from reproduce.training.loop import Lookahead, TrainConfig, make_optimizer
from reproduce.training.radam import RectifiedAdam


def by_hand(steps, *, lr, eps, wd, b1=0.9, b2=0.999, threshold=5.0, p=1.0):
    """Parameter after each step, from TF-Addons' formulas (module docstring of radam.py)."""
    m = v = 0.0
    out = []
    rho_inf = 2 / (1 - b2) - 1
    for t in range(1, steps + 1):
        g = p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t)
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        if rho >= threshold:
            r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            update = r * m_hat / (math.sqrt(v / (1 - b2**t)) + eps)
        else:
            update = m_hat
        p = p - lr * (update + wd * p)
        out.append(p)
    return out


def run(opt_class, steps, p=1.0, **kw):
    w = torch.tensor([p], dtype=torch.float64, requires_grad=True)
    opt = opt_class([w], **kw)
    out = []
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * w**2).sum().backward()
        opt.step()
        out.append(w.item())
    return out


def test_first_steps_are_bias_corrected_momentum_with_decoupled_decay():
    """rho_t < 5 for t <= 5 (beta2 = 0.999): no rectification. Step 1 by hand: g = 1,
    m_hat = 1, p = 1 - 0.1 * (1 + 0.01 * 1) = 0.899."""
    got = run(RectifiedAdam, 3, lr=0.1, eps=1e-6, weight_decay=0.01)
    assert got[0] == pytest.approx(0.899, abs=1e-15)
    assert got == pytest.approx(by_hand(3, lr=0.1, eps=1e-6, wd=0.01), rel=1e-14, abs=0)


def test_rectified_steps_add_eps_to_the_bias_corrected_sqrt_v_and_differ_from_torch():
    """rho_6 = 5.994 >= 5: steps 6 and 7 are rectified. eps = 1e-3 makes where it is added
    visible: torch.optim.RAdam adds it to sqrt(v) before the bias correction."""
    kw = dict(lr=0.1, eps=1e-3, weight_decay=0.01)
    want = by_hand(7, lr=0.1, eps=1e-3, wd=0.01)
    unrectified = by_hand(7, lr=0.1, eps=1e-3, wd=0.01, threshold=math.inf)
    assert want[:5] == unrectified[:5] and want[5] != unrectified[5]  # the hand computation rectifies at 6
    got = run(RectifiedAdam, 7, **kw)
    assert got == pytest.approx(want, rel=1e-13, abs=0)
    torch_radam = run(torch.optim.RAdam, 7, decoupled_weight_decay=True, **kw)
    assert torch_radam[:5] == pytest.approx(want[:5], rel=1e-13)  # the same before rectification
    assert abs(torch_radam[6] - want[6]) > 1e-5  # 8e-5 here, the tolerance above is 1e-13


def test_rectification_starts_when_rho_t_equals_the_threshold():
    """TF-Addons rectifies when rho_t >= threshold (torch: > 5): with the threshold set to rho_6
    itself, step 6 is rectified; just above it, it is not."""
    b2 = 0.999
    rho_inf = 2 / (1 - b2) - 1
    rho6 = rho_inf - 2 * 6 * b2**6 / (1 - b2**6)
    kw = dict(lr=0.1, eps=1e-3, weight_decay=0.0)
    at = run(RectifiedAdam, 6, sma_threshold=rho6, **kw)
    above = run(RectifiedAdam, 6, sma_threshold=math.nextafter(rho6, math.inf), **kw)
    assert at[5] == pytest.approx(by_hand(6, lr=0.1, eps=1e-3, wd=0.0, threshold=rho6)[5], rel=1e-13)
    assert above[5] == pytest.approx(by_hand(6, lr=0.1, eps=1e-3, wd=0.0, threshold=math.inf)[5], rel=1e-13)
    assert at[5] != above[5]


def test_capturable_tensor_step_is_the_same_update():
    """The CUDA-graph form (factors as tensors, ``capturable=True``) on the CPU: the same numbers
    as the multi-tensor form, on a vector with different gradients per element, over 8 steps."""
    def steps(capturable):
        w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
        opt = RectifiedAdam([w], lr=0.05, eps=1e-6, weight_decay=0.01, capturable=capturable)
        for _ in range(8):
            opt.zero_grad()
            (w**4).sum().backward()
            opt.step()
        return w.detach()

    torch.testing.assert_close(steps(True), steps(False), rtol=1e-12, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_capturable_step_replayed_from_a_cuda_graph_advances_like_the_eager_one():
    """Captured once and replayed, the step counter and the update advance on the device exactly
    as eager steps do (a counter left on the CPU would freeze at the captured step)."""
    def make():
        w = torch.tensor([1.0, -2.0, 0.5], device="cuda", requires_grad=True)
        return w, RectifiedAdam([w], lr=0.05, eps=1e-6, weight_decay=0.01, capturable=True)

    eager_w, eager = make()
    for _ in range(9):
        eager.zero_grad()
        (eager_w**4).sum().backward()
        eager.step()
    w, opt = make()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        opt.zero_grad(set_to_none=False)
        (w**4).sum().backward()
        opt.step()  # step 1 (warm-up: creates the state)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=False)
    with torch.cuda.graph(graph):
        (w**4).sum().backward()
        opt.step()  # recorded, not run: the state stays at step 1
    for _ in range(8):  # steps 2..9
        opt.zero_grad(set_to_none=False)
        graph.replay()
    torch.cuda.synchronize()
    assert float(opt.state[w]["step"]) == 9.0
    torch.testing.assert_close(w.detach(), eager_w.detach(), rtol=1e-5, atol=0)


def test_train_config_optimizer_default_and_bad_value():
    model = torch.nn.Linear(2, 1)
    assert isinstance(make_optimizer(model, TrainConfig(epochs=1)).optimizer, RectifiedAdam)
    with pytest.raises(ValueError, match="unknown optimizer 'adam'; valid choices: radam-tfa, radam-torch"):
        TrainConfig(epochs=1, optimizer="adam")
    with pytest.raises(ValueError, match="betas"):
        RectifiedAdam(model.parameters(), betas=(0.9, 1.0))


def test_state_dict_round_trip_resumes_the_same_path():
    """Inside Lookahead (as trained), saving after 4 steps and loading into a fresh optimiser
    continues exactly as the uninterrupted one."""
    def make():
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        return model, make_optimizer(model, TrainConfig(epochs=1, lr=0.01))

    x = torch.randn(16, 3)

    def step(model, opt):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()

    model, opt = make()
    for _ in range(10):
        step(model, opt)
    resumed_model, resumed = make()
    for _ in range(4):
        step(resumed_model, resumed)
    saved_model, saved = resumed_model.state_dict(), resumed.state_dict()
    fresh_model, fresh = make()
    fresh_model.load_state_dict(saved_model)
    fresh.load_state_dict(saved)
    assert isinstance(fresh, Lookahead)
    for _ in range(6):
        step(fresh_model, fresh)
    for a, b in zip(model.parameters(), fresh_model.parameters()):
        assert torch.equal(a, b)
