"""The recurrent baseline (`lstm`): stacked LSTM cells whose state restarts at episode starts."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from memory_models.base import MemoryModel, MemoryRecord, MemoryState


@dataclasses.dataclass
class LSTMState(MemoryState):
    hidden: Tensor  # B x n_layers x D
    cell: Tensor  # B x n_layers x D


class LSTMMemory(MemoryModel):
    static_state = True

    def __init__(self, d_model: int = 64, n_layers: int = 2, n_heads: int = 1, dropout: float = 0.0):
        """n_heads is unused; it is accepted so every model takes the same common options."""
        super().__init__()
        self.d_model, self.n_layers = d_model, n_layers
        self.cells = nn.ModuleList(nn.LSTMCell(d_model, d_model) for _ in range(n_layers))
        self.dropout = nn.Dropout(dropout)

    def initial_state(self, batch_size: int, device: torch.device | str) -> LSTMState:
        zeros = torch.zeros(batch_size, self.n_layers, self.d_model, device=device)
        return LSTMState(hidden=zeros, cell=zeros.clone())

    def forward(self, x: Tensor, state: LSTMState, first: Tensor) -> tuple[Tensor, LSTMState, MemoryRecord]:
        hidden, cell = list(state.hidden.unbind(1)), list(state.cell.unbind(1))  # n_layers x (B x D)
        keep = (~first).to(x.dtype).unsqueeze(-1)  # B x T x 1: zero where an episode starts
        outputs = []
        for t in range(x.shape[1]):
            h_in = x[:, t]  # B x D
            for layer, lstm_cell in enumerate(self.cells):
                hidden[layer], cell[layer] = lstm_cell(h_in, (hidden[layer] * keep[:, t], cell[layer] * keep[:, t]))
                h_in = self.dropout(hidden[layer])
            outputs.append(h_in)
        out = torch.stack(outputs, dim=1)  # B x T x D
        next_state = LSTMState(hidden=torch.stack(hidden, 1), cell=torch.stack(cell, 1))
        return out, next_state, self.no_record(x)
