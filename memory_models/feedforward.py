"""The memoryless baseline (`none`): a residual feed-forward stack that sees only the current step."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from memory_models.base import MemoryModel, MemoryRecord, MemoryState


@dataclasses.dataclass
class NoState(MemoryState):
    """Nothing is remembered."""


class FeedForward(MemoryModel):
    static_state = True

    def __init__(self, d_model: int = 64, n_layers: int = 2, n_heads: int = 1, dropout: float = 0.0):
        """n_heads is unused; it is accepted so every model takes the same common options."""
        super().__init__()
        self.d_model, self.n_layers = d_model, n_layers
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(d_model),
                nn.Linear(d_model, 4 * d_model),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(4 * d_model, d_model),
            )
            for _ in range(n_layers)
        )

    def initial_state(self, batch_size: int, device: torch.device | str) -> NoState:
        return NoState()

    def forward(self, x: Tensor, state: MemoryState, first: Tensor) -> tuple[Tensor, NoState, MemoryRecord]:
        for block in self.blocks:
            x = x + block(x)  # B x T x D
        return x, NoState(), self.no_record(x)
