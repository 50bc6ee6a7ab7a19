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

    ``channels`` inputs per time step (1: the returns alone). A bidirectional encoder reads the window both
    ways; the head sees each direction's *final* state, the one that has read the whole window: the forward
    direction's at the last step, the backward direction's at the first (``out[:, -1]`` alone would give the
    backward direction only the last return).
    """

    def __init__(self, cfg: ModelConfig, channels: int = 1) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            input_size=channels,
            hidden_size=cfg.hidden_size,
            num_layers=cfg.num_layers,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
            batch_first=True,
            bidirectional=cfg.bidirectional,
        )
        self.bidirectional, self.hidden_size = cfg.bidirectional, cfg.hidden_size
        self.head = nn.Linear((2 if cfg.bidirectional else 1) * cfg.hidden_size, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, returns: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(returns)  # [B, T, C] -> [B, T, D*H] (D = 2 when bidirectional)
        if self.bidirectional:
            h = self.hidden_size
            final = torch.cat([out[:, -1, :h], out[:, 0, h:]], dim=-1)  # [B, 2H]: forward end, backward end
        else:
            final = out[:, -1, :]  # [B, H]
        return self.head(final)  # [B, D*H] -> [B, 1]
