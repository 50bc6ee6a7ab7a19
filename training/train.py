"""The fit loop: Adam on mini-batches, early stopping with best-weights restore, ReduceLROnPlateau,
gradient clipping; seeded and deterministic on CPU."""

from __future__ import annotations

import copy
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from closecast.config import Config, TrainConfig
from closecast.representation import WindowScaler
from training.model import CloseLSTM
from training.optim import Adam, ReduceOnPlateau
from training.windowset import WindowSet

ProgressFn = Callable[[dict[str, Any]], None]
_SEEDING = threading.Lock()  # torch's global generator is shared by the threads of one process


@dataclass
class FitResult:
    model: CloseLSTM
    best_epoch: int  # 0 means the untrained (drift-only) weights were never beaten on validation
    epochs_run: int
    seconds: float
    history: dict[str, list[float]] = field(default_factory=dict)
    device: str = "cpu"  # where it was trained (the returned model is on the CPU)


def seed_everything(seed: int, threads: int, device: torch.device | None = None) -> None:
    """Same seed, same threads, same machine -> the same weights, bit for bit, on the CPU. On CUDA the
    deterministic kernels are asked for where they exist (cuBLAS needs its workspace setting before the
    first call); a kernel without one warns instead of failing the run."""
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    cuda = device is not None and device.type == "cuda"
    if cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:  # the same flag, without torch.use_deterministic_algorithms's import of torch._inductor (seconds,
        # for its torch.compile setting; nothing here is compiled)
        torch._C._set_deterministic_algorithms(True, warn_only=False)


def make_loss(cfg: TrainConfig) -> nn.Module:
    return {"mse": nn.MSELoss(), "huber": nn.HuberLoss(delta=1.0), "mae": nn.L1Loss()}[cfg.loss]


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when torch sees a GPU, else the CPU; ``cuda`` without one is refused, saying so."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device is 'cuda' but torch sees no CUDA GPU here; use --device cpu or auto")
    return torch.device(name)


def _tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(a).to(device)


def _validation_loss(
    model: nn.Module, loss_fn: nn.Module, val: WindowSet, scaler: WindowScaler, device: torch.device
) -> float:
    """The loss early stopping watches (``model.eval()``: dropout off), over batches of ``EVAL_BATCH``
    windows weighted by size (one batch, as on small series: exactly the loss of one pass)."""
    model.eval()
    losses = []
    with torch.no_grad():
        for x, y in val.batches(scaler):
            losses.append((float(loss_fn(model(_tensor(x, device)), _tensor(y, device))), y.shape[0]))
    if len(losses) == 1:
        return losses[0][0]
    return sum(loss * n for loss, n in losses) / max(1, len(val))


def _train_epoch(
    model: nn.Module,
    loss_fn: nn.Module,
    opt: Adam,
    data: tuple[WindowSet, WindowScaler, torch.device],
    cfg: TrainConfig,
    gen: torch.Generator,
) -> float:
    """One pass in a seeded random order; each batch's windows are built here, then moved to the device."""
    train, scaler, device = data
    model.train()
    order = torch.randperm(len(train), generator=gen).numpy()
    total = 0.0
    for start in range(0, len(train), cfg.batch_size):
        idx = order[start : start + cfg.batch_size]
        x, y = _tensor(train.inputs(idx, scaler), device), _tensor(train.targets(scaler, idx), device)
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        total += float(loss.detach()) * idx.size
    return total / len(train)


def fit(
    cfg: Config,
    train: WindowSet,
    val: WindowSet,
    scaler: WindowScaler,
    progress: ProgressFn | None = None,
    quiet: bool = False,
) -> FitResult:
    """Train on the windows of ``train`` (inputs ``[B, T, C]``, targets ``[B, 1]``, built per batch); return
    the weights best on ``val``, on the CPU (evaluation and export run there)."""
    tc = cfg.train
    device = resolve_device(tc.device)
    with _SEEDING:  # trials run in threads (tune --jobs): seed and draw the first weights as one step
        seed_everything(tc.seed, tc.threads, device)
        model = CloseLSTM(cfg.model, channels=train.channels).to(device)
    loss_fn = make_loss(tc)
    opt = Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)  # = torch.optim's (optim.py)
    sched = ReduceOnPlateau(opt, factor=tc.lr_factor, patience=tc.lr_patience)
    gen = torch.Generator().manual_seed(tc.seed)
    data = (train, scaler, device)

    best_val = _validation_loss(
        model, loss_fn, val, scaler, device
    )  # epoch 0: the drift-only forecast to beat
    best_state, best_epoch, stale = copy.deepcopy(model.state_dict()), 0, 0
    history: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "lr": []}
    started = time.perf_counter()
    bar = tqdm(range(1, tc.epochs + 1), desc="epochs", unit="epoch", disable=quiet or not sys.stderr.isatty())
    epoch = 0
    for epoch in bar:
        train_loss = _train_epoch(model, loss_fn, opt, data, tc, gen)
        val_loss = _validation_loss(model, loss_fn, val, scaler, device)
        sched.step(val_loss)
        lr = opt.lr
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
    model.cpu().eval()
    return FitResult(model, best_epoch, epoch, time.perf_counter() - started, history, str(device))


def predict_scaled(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """One vectorised forward pass on one batch (callers batch, ``windowset.EVAL_BATCH``): ``[B, T, C]`` ->
    ``[B]`` scaled next returns."""
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x).float()).numpy()[:, 0].astype(np.float64)
