"""The gated recurrent baseline (`gru`, Cho et al. 2014): stacked GRU cells whose state restarts at episode starts.

The recurrent baseline of POPGym, Sample Factory, torchrl and CleanRL, beside ``lstm``: one state
vector per layer instead of two, and about three quarters of the LSTM's parameters and work.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from memory_models.base import MemoryModel, MemoryRecord, MemoryState


@dataclasses.dataclass
class GRUState(MemoryState):
    hidden: Tensor  # B x n_layers x D


class GRUMemory(MemoryModel):
    static_state = True

    def __init__(self, d_model: int = 64, n_layers: int = 2, n_heads: int = 1, dropout: float = 0.0):
        """n_heads is unused; it is accepted so every model takes the same common options."""
        super().__init__()
        self.d_model, self.n_layers = d_model, n_layers
        self.cells = nn.ModuleList(nn.GRUCell(d_model, d_model) for _ in range(n_layers))
        self.dropout = nn.Dropout(dropout)

    def initial_state(self, batch_size: int, device: torch.device | str) -> GRUState:
        return GRUState(hidden=torch.zeros(batch_size, self.n_layers, self.d_model, device=device))

    def forward(self, x: Tensor, state: GRUState, first: Tensor) -> tuple[Tensor, GRUState, MemoryRecord]:
        hidden = list(state.hidden.unbind(1))  # n_layers x (B x D)
        keep = (~first).to(x.dtype).unsqueeze(-1)  # B x T x 1: zero where an episode starts
        outputs = []
        for t in range(x.shape[1]):
            h_in = x[:, t]  # B x D
            for layer, gru_cell in enumerate(self.cells):
                hidden[layer] = gru_cell(h_in, hidden[layer] * keep[:, t])  # B x D
                h_in = self.dropout(hidden[layer])
            outputs.append(h_in)
        out = torch.stack(outputs, dim=1)  # B x T x D
        return out, GRUState(hidden=torch.stack(hidden, 1)), self.no_record(x)
