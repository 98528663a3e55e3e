"""The agent's network: an observation encoder, a pluggable memory model, and actor and critic heads.

The project's tasks use the word-grid encoder; any other env's observation space gets its encoder
from ``agents/encoders.py`` (passed in as ``encoder``, a builder given d_model).
"""

from __future__ import annotations

from collections.abc import Callable

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
        self,
        vocab_size: int,
        num_actions: int,
        embed_dim: int,
        model_name: str,
        model_config: dict[str, object],
        encoder: Callable[[int], nn.Module] | None = None,
        action_splits: tuple[int, ...] | None = None,
    ):
        """``vocab_size`` sizes the word-grid encoder, used unless ``encoder`` builds another; ``num_actions`` is
        the number of logits (for MultiDiscrete actions the sum of ``action_splits``, the logits per component)."""
        super().__init__()
        self.memory = memory_models.build(model_name, **model_config)
        d_model = self.memory.d_model
        self.encoder = WordGridEncoder(vocab_size, embed_dim, d_model) if encoder is None else encoder(d_model)
        self.action_splits = action_splits
        self.actor = nn.Linear(self.memory.d_model, num_actions)
        self.critic = nn.Linear(self.memory.d_model, 1)

    def initial_state(self, batch_size: int, device: torch.device | str) -> MemoryState:
        return self.memory.initial_state(batch_size, device)

    def forward(
        self, obs: Tensor, state: MemoryState, first: Tensor
    ) -> tuple[Tensor, Tensor, MemoryState, MemoryRecord]:
        """obs: B x T x observation (a word grid: 3 x 3 x V int8), first: B x T bool -> logits B x T x A,
        values B x T, next state, record."""
        x = self.encoder(obs)  # B x T x D
        out, next_state, record = self.memory(x, state, first)  # B x T x D
        return self.actor(out), self.critic(out).squeeze(-1), next_state, record

    def update_statistics(self, obs: Tensor) -> None:
        """Merge a learned window's observations (N x T x ...) into the encoder's running normalisation, if any."""
        update = getattr(self.encoder, "update_statistics", None)
        if update is not None:
            update(obs)
