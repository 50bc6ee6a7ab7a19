"""Adam and reduce-on-plateau for the fit loop, computing exactly what ``torch.optim.Adam`` and
``torch.optim.lr_scheduler.ReduceLROnPlateau`` (default thresholds) compute, without their base class.

Why: every ``torch.optim.Optimizer`` imports ``torch._dynamo`` (and with it ``torch._inductor``, sympy...)
when it is built and at each step, for ``torch.compile`` support nothing here uses; that import cost a
training run more than half of ``import torch`` again. The update itself is torch's own functional
``torch.optim.adam.adam``, given the state ``Adam`` would keep (a float32 step count on the CPU, zeroed
first and second moments), so the weights are the same to the last bit
(``tests/training/test_same_numbers.py`` holds runs made with ``torch.optim.Adam`` to that).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch.optim.adam import adam

BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults
EPS = 1e-8
PLATEAU_THRESHOLD = 1e-4  # ReduceLROnPlateau's defaults: relative improvement, no cooldown, no floor
PLATEAU_EPS = 1e-8


class Adam:
    """``torch.optim.Adam(params, lr, weight_decay)`` with its other settings at their defaults."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0) -> None:
        self.params = list(params)
        self.lr, self.weight_decay = lr, weight_decay
        self.state: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # step, m, v per param

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        live: list[torch.Tensor] = []
        grads: list[torch.Tensor] = []
        steps: list[torch.Tensor] = []
        exp_avgs: list[torch.Tensor] = []
        exp_avg_sqs: list[torch.Tensor] = []
        for p in self.params:
            if p.grad is None:
                continue
            if id(p) not in self.state:  # as Adam._init_group: a float32 step on the CPU, zero moments
                zeros = torch.zeros_like(p, memory_format=torch.preserve_format)
                self.state[id(p)] = (torch.tensor(0.0, dtype=torch.float32), zeros, zeros.clone())
            step, exp_avg, exp_avg_sq = self.state[id(p)]
            live.append(p)
            grads.append(p.grad)
            steps.append(step)
            exp_avgs.append(exp_avg)
            exp_avg_sqs.append(exp_avg_sq)
        adam(
            live,
            grads,
            exp_avgs,
            exp_avg_sqs,
            [],
            steps,
            amsgrad=False,
            beta1=BETAS[0],
            beta2=BETAS[1],
            lr=self.lr,
            weight_decay=self.weight_decay,
            eps=EPS,
            maximize=False,
        )


class ReduceOnPlateau:
    """``ReduceLROnPlateau(optimizer, factor=..., patience=...)`` in ``min`` mode: the learning rate times
    ``factor`` once the watched loss has not improved by 0.01% for more than ``patience`` epochs."""

    def __init__(self, opt: Adam, factor: float, patience: int) -> None:
        self.opt, self.factor, self.patience = opt, factor, patience
        self.best, self.bad_epochs = math.inf, 0

    def step(self, loss: float) -> None:
        if loss < self.best * (1.0 - PLATEAU_THRESHOLD):
            self.best, self.bad_epochs = loss, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            new_lr = max(self.opt.lr * self.factor, 0.0)
            if self.opt.lr - new_lr > PLATEAU_EPS:
                self.opt.lr = new_lr
            self.bad_epochs = 0
