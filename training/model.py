"""The network, and nothing else: an LSTM over scaled log returns with a linear head for the next one."""

from __future__ import annotations

import torch
from torch import nn

from closecast.config import ModelConfig


class CloseLSTM(nn.Module):
    """LSTM encoder + linear head predicting the next scaled log return.

    The head starts at zero, so an untrained model forecasts the training drift (about "tomorrow = today"),
    and early stopping, which also scores the epoch-0 weights, keeps the model only where it departs
    from that baseline for the better on the validation part.
    """

    def __init__(self, cfg: ModelConfig, input_size: int = 1) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            input_size=input_size,  # 1 + the OHLCV feature channels
            hidden_size=cfg.hidden_size,
            num_layers=cfg.num_layers,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.head = nn.Linear(cfg.hidden_size, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, returns: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(returns)  # [B, T, 1+F] -> [B, T, H]
        return self.head(out[:, -1, :])  # [B, H] -> [B, 1]
