"""The fit loop: Adam on mini-batches, early stopping with best-weights restore, ReduceLROnPlateau,
gradient clipping; seeded and deterministic on CPU."""

from __future__ import annotations

import copy
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from closecast.config import Config, TrainConfig
from training.model import CloseLSTM

ProgressFn = Callable[[dict[str, Any]], None]


@dataclass
class FitResult:
    model: CloseLSTM
    best_epoch: int  # 0 means the untrained (drift-only) weights were never beaten on validation
    epochs_run: int
    seconds: float
    history: dict[str, list[float]] = field(default_factory=dict)


def seed_everything(seed: int, threads: int) -> None:
    """Same seed, same threads, same machine -> the same weights, bit for bit."""
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def make_loss(cfg: TrainConfig) -> nn.Module:
    return {"mse": nn.MSELoss(), "huber": nn.HuberLoss(delta=1.0), "mae": nn.L1Loss()}[cfg.loss]


def _validation_loss(model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The loss early stopping watches (``model.eval()``: torch's inference mode, dropout off)."""
    model.eval()
    with torch.no_grad():
        return float(loss_fn(model(x), y))


def _train_epoch(
    model: nn.Module,
    loss_fn: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    gen: torch.Generator,
) -> float:
    model.train()
    order = torch.randperm(x.shape[0], generator=gen)
    total = 0.0
    for start in range(0, x.shape[0], cfg.batch_size):
        idx = order[start : start + cfg.batch_size]
        opt.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        total += float(loss.detach()) * idx.numel()
    return total / x.shape[0]


def fit(
    cfg: Config,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    progress: ProgressFn | None = None,
    quiet: bool = False,
) -> FitResult:
    """Train on scaled windows ``[N, T, 1]`` / targets ``[N, 1]``; return the weights best on validation."""
    tc = cfg.train
    seed_everything(tc.seed, tc.threads)
    model = CloseLSTM(cfg.model, input_size=1 + len(cfg.data.features))
    loss_fn = make_loss(tc)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=tc.lr_factor, patience=tc.lr_patience)
    xt, yt = torch.from_numpy(x_train).float(), torch.from_numpy(y_train).float()
    xv, yv = torch.from_numpy(x_val).float(), torch.from_numpy(y_val).float()
    gen = torch.Generator().manual_seed(tc.seed)

    best_val = _validation_loss(model, loss_fn, xv, yv)  # epoch 0: the drift-only forecast to beat
    best_state, best_epoch, stale = copy.deepcopy(model.state_dict()), 0, 0
    history: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "lr": []}
    started = time.perf_counter()
    bar = tqdm(range(1, tc.epochs + 1), desc="epochs", unit="epoch", disable=quiet or not sys.stderr.isatty())
    epoch = 0
    for epoch in bar:
        train_loss = _train_epoch(model, loss_fn, opt, xt, yt, tc, gen)
        val_loss = _validation_loss(model, loss_fn, xv, yv)
        sched.step(val_loss)
        lr = opt.param_groups[0]["lr"]
        history["train_loss"].append(train_loss)
        history["val_loss"].append(val_loss)
        history["lr"].append(lr)
        bar.set_postfix(train_loss=f"{train_loss:.4f}", val_loss=f"{val_loss:.4f}")
        if progress:
            progress(
                {
                    "epoch": epoch,
                    "epochs": tc.epochs,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "lr": lr,
                }
            )
        if val_loss < best_val - tc.min_delta:
            best_val, best_state, best_epoch, stale = val_loss, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            stale += 1
            if stale >= tc.patience:
                break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return FitResult(model, best_epoch, epoch, time.perf_counter() - started, history)


def predict_scaled(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """One vectorised forward pass: ``[N, T, 1]`` -> ``[N]`` scaled next returns."""
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x).float()).numpy()[:, 0].astype(np.float64)
