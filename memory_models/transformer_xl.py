"""Transformer-XL (Dai et al. 2019): each layer attends to a cache of its last ``mem_len`` inputs.

The cache holds, per layer, the layer inputs of the last ``mem_len`` steps with the gradient
stopped (segment recurrence). Attention uses relative positions, so cached keys need no absolute
index. Each query sees itself and the ``mem_len`` steps before it, never more: a query late in a
window does not see further back than an early one, so the output does not depend on how a
sequence is cut into windows (one step at a time equals one long call).

Cost per step and layer: attention over ``mem_len + T`` keys, memory ``mem_len x d_model`` per row.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from memory_models.attention import TransformerLayer, contiguous_distance, episode_ages, visible
from memory_models.base import MemoryModel, MemoryRecord, MemoryState


@dataclasses.dataclass
class TransformerXLState(MemoryState):
    memory: list[Tensor]  # per layer B x mem_len x D: that layer's inputs, oldest first
    episode_age: Tensor  # B: steps since the current episode began, at the last step (-1: none yet)


class TransformerXL(MemoryModel):
    static_state = True

    def __init__(
        self,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        dropout: float = 0.0,
        mem_len: int = 200,
    ):
        super().__init__()
        if mem_len < 1:
            raise ValueError(f"mem_len must be at least 1, got {mem_len}")
        self.d_model, self.n_layers, self.mem_len = d_model, n_layers, mem_len
        self.layers = nn.ModuleList(
            TransformerLayer(d_model, n_heads, dropout, n_positions=mem_len + 1) for _ in range(n_layers)
        )
        self.out_norm = nn.LayerNorm(d_model)

    def initial_state(self, batch_size: int, device: torch.device | str) -> TransformerXLState:
        dtype = self.out_norm.weight.dtype
        shape = (batch_size, self.mem_len, self.d_model)
        return TransformerXLState(
            memory=[torch.zeros(shape, device=device, dtype=dtype) for _ in range(self.n_layers)],
            episode_age=torch.full((batch_size,), -1, device=device, dtype=torch.long),
        )

    def forward(
        self, x: Tensor, state: TransformerXLState, first: Tensor
    ) -> tuple[Tensor, TransformerXLState, MemoryRecord]:
        ages = episode_ages(first, state.episode_age)  # B x T
        distance = contiguous_distance(self.mem_len, x.shape[1], x.device)  # 1 x T x (M + T)
        allowed = visible(distance, ages, self.mem_len)  # B x T x (M + T)
        memory, h = [], x
        for layer, cache in zip(self.layers, state.memory, strict=True):
            context = torch.cat([cache, h], dim=1)  # B x (M + T) x D
            memory.append(context[:, -self.mem_len :].detach())
            h = layer(h, context, distance, allowed, reach=self.mem_len)  # B x T x D
        past = (allowed & (distance > 0)).sum(-1).to(x.dtype).mean()  # same reach in every layer
        record = MemoryRecord(
            aux_loss=x.new_zeros(()),
            memory_size=past.expand(self.n_layers),
            spans=x.new_full((self.n_layers, *x.shape[:2]), float(self.mem_len)),
        )
        return self.out_norm(h), TransformerXLState(memory, ages[:, -1]), record
