"""The agent's network: a word-grid encoder, a pluggable memory model, and actor and critic heads."""

from __future__ import annotations

import torch
from torch import Tensor, nn

import memory_models
from memory_models import MemoryRecord, MemoryState


class WordGridEncoder(nn.Module):
    """Embeds the (3, 3, V) binary word grid: each cell's words are embedded and summed, cells stay in place."""

    def __init__(self, vocab_size: int, embed_dim: int, d_model: int, grid_cells: int = 9):
        super().__init__()
        self.embedding = nn.Parameter(torch.randn(vocab_size, embed_dim))  # N(0, 1), as nn.Embedding
        self.project = nn.Linear(grid_cells * embed_dim, d_model)

    def forward(self, obs: Tensor) -> Tensor:
        cells = obs.to(self.embedding.dtype) @ self.embedding  # ... x 3 x 3 x E: sum of the cell's word vectors
        return torch.relu(self.project(cells.flatten(-3)))  # ... x d_model


class Policy(nn.Module):
    """Maps a window of observations and the memory before it to action logits, values and the memory after it."""

    def __init__(
        self, vocab_size: int, num_actions: int, embed_dim: int, model_name: str, model_config: dict[str, object]
    ):
        super().__init__()
        self.memory = memory_models.build(model_name, **model_config)
        self.encoder = WordGridEncoder(vocab_size, embed_dim, self.memory.d_model)
        self.actor = nn.Linear(self.memory.d_model, num_actions)
        self.critic = nn.Linear(self.memory.d_model, 1)

    def initial_state(self, batch_size: int, device: torch.device | str) -> MemoryState:
        return self.memory.initial_state(batch_size, device)

    def forward(
        self, obs: Tensor, state: MemoryState, first: Tensor
    ) -> tuple[Tensor, Tensor, MemoryState, MemoryRecord]:
        """obs: B x T x 3 x 3 x V (int8), first: B x T bool -> logits B x T x A, values B x T, next state, record."""
        x = self.encoder(obs)  # B x T x D
        out, next_state, record = self.memory(x, state, first)  # B x T x D
        return self.actor(out), self.critic(out).squeeze(-1), next_state, record
