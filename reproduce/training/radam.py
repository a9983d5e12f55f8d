"""RAdam as TensorFlow-Addons' ``RectifiedAdam`` computes it (the released optimiser).

With ``m``, ``v`` Adam's moving averages of the gradient and its square at step ``t``,
``m_hat = m / (1 - beta1^t)``, ``v_hat = v / (1 - beta2^t)``, ``rho_inf = 2 / (1 - beta2) - 1`` and
``rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)``, one step is

    update = r_t * m_hat / (sqrt(v_hat) + eps)   if rho_t >= sma_threshold (5)
             m_hat                               otherwise
    update = update + weight_decay * p
    p      = p - lr * update

with ``r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))``.
``torch.optim.RAdam`` differs in two places: it adds ``eps`` to ``sqrt(v)`` *before* the bias
correction (``sqrt(1 - beta2^t) / (sqrt(v) + eps)``), and it rectifies only when ``rho_t > 5``.
(Its decoupled weight decay, ``p * (1 - lr * weight_decay)`` before the step, is the same update.)
TF-Addons' warm-up (``total_steps``) is off by default and not implemented here.

``capturable=True`` (set by the CUDA-graph step, :class:`reproduce.training.loop._GraphStep`)
computes the step-dependent factors from the step counter as tensors, with no host sync, so the
step can be captured in a CUDA graph; otherwise they are Python floats and the parameters that
share a step count are updated with multi-tensor operations.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch

__all__ = ["RectifiedAdam"]


def _rectification(step: float, beta2: float) -> tuple[float, float]:
    """``(rho_t, r_t)`` of step ``step`` (``r_t`` nan where ``rho_t <= 4``: never used there)."""
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho = rho_inf - 2.0 * step * beta2**step / (1.0 - beta2**step)
    ratio = (rho - 4.0) * (rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho)
    return rho, math.sqrt(ratio) if ratio >= 0 else math.nan


class RectifiedAdam(torch.optim.Optimizer):
    """TF-Addons' RectifiedAdam (module docstring); defaults are TF-Addons' (``eps=1e-7``, no weight
    decay, ``sma_threshold=5``)."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-7, weight_decay: float = 0.0, sma_threshold: float = 5.0,
                 capturable: bool = False):
        if not lr > 0 or not eps >= 0 or not weight_decay >= 0:
            raise ValueError(f"RectifiedAdam needs lr > 0, eps >= 0 and weight_decay >= 0, got lr={lr!r}, "
                             f"eps={eps!r}, weight_decay={weight_decay!r}")
        if not all(0.0 <= b < 1.0 for b in betas) or len(betas) != 2:
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        sma_threshold=sma_threshold, capturable=capturable)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                state = self.state[p]
                if not state:
                    # capturable: the counter lives on the parameter's device, so a CUDA graph
                    # captures its increment (a CPU tensor would stay put on replay)
                    device = p.device if group["capturable"] else torch.device("cpu")
                    state["step"] = torch.zeros((), dtype=torch.float32, device=device)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
            if group["capturable"]:
                for p in params:
                    self._tensor_step(p, group)
                continue
            by_step: dict[float, list[torch.Tensor]] = {}
            for p in params:
                by_step.setdefault(float(self.state[p]["step"]), []).append(p)
            for step, same in by_step.items():
                self._foreach_step(same, step, group)
        return loss

    def _foreach_step(self, params: list[torch.Tensor], step: float, group: dict) -> None:
        """One step of ``params`` (all at step ``step``), the factors as Python floats."""
        beta1, beta2 = group["betas"]
        grads = [p.grad for p in params]
        m = [self.state[p]["exp_avg"] for p in params]
        v = [self.state[p]["exp_avg_sq"] for p in params]
        torch._foreach_mul_(m, beta1)
        torch._foreach_add_(m, grads, alpha=1.0 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, grads, grads, value=1.0 - beta2)
        update = torch._foreach_div(m, 1.0 - beta1**step)
        rho, r = _rectification(step, beta2)
        if rho >= group["sma_threshold"]:
            denom = torch._foreach_sqrt(torch._foreach_div(v, 1.0 - beta2**step))
            torch._foreach_add_(denom, group["eps"])
            torch._foreach_mul_(update, r)
            torch._foreach_div_(update, denom)
        if group["weight_decay"]:
            torch._foreach_add_(update, params, alpha=group["weight_decay"])
        torch._foreach_add_(params, update, alpha=-group["lr"])

    def _tensor_step(self, p: torch.Tensor, group: dict) -> None:
        """The same step with the step-dependent factors as tensors on the step counter's device."""
        beta1, beta2 = group["betas"]
        state = self.state[p]
        m, v, grad = state["exp_avg"], state["exp_avg_sq"], p.grad
        step = state["step"].to(torch.float64)  # the factors in double precision, as the float form
        m.mul_(beta1).add_(grad, alpha=1.0 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        bias1, bias2 = 1.0 - beta1**step, 1.0 - beta2**step
        rho_inf = 2.0 / (1.0 - beta2) - 1.0
        rho = rho_inf - 2.0 * step * beta2**step / bias2
        ratio = (rho - 4.0) * (rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho)
        m_hat = m / bias1
        rectified = torch.sqrt(ratio.clamp(min=0.0)) * m_hat / (torch.sqrt(v / bias2) + group["eps"])
        update = torch.where(rho >= group["sma_threshold"], rectified, m_hat)
        if group["weight_decay"]:
            update = update + group["weight_decay"] * p
        p.sub_(group["lr"] * update)
