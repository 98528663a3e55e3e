"""Memformer (memformer paper, section 2.2.3): a fixed number of memory slots per layer.

Each episode is cut into segments of ``segment_len`` steps, counted from the episode's first
step. Each layer first reads its memory slots (memory cross attention: the steps query the slots),
then attends causally to the earlier steps of the same segment (relative positions, as the paper's
encoder) and applies a feed-forward, through the shared ``TransformerLayer``. When a segment
completes, each layer writes its next memory by memory slot attention: every slot queries itself
and that layer's outputs over the segment, never another slot, so a slot's update depends on no
other slot (paper Figure 2c). The written memory is normalised per slot,
``M' = LayerNorm(M + write) + bias`` with a learned bias per slot; the initial memory is learned.

Segments follow each row's episode, not a global clock, so an episode gives the same outputs
whatever came before it, and the state (memory, the last ``segment_len - 1`` steps' hidden states
per layer, the episode age) makes one long call equal to any cut into shorter calls. Rows write
at different steps: the window is processed in chunks of ``segment_len`` steps, inside which a
row writes at most once; a first pass computes every step with the memory it started with (right
up to the row's write), the rows that complete a segment write, and a second pass recomputes the
steps after each row's write with the new memory. A step whose episode began after the memory was
last written reads the learned initial memory instead.

Cost per step and layer: attention over ``2 * num_slots`` memory slots (the carried and the
initial ones) and at most ``segment_len`` steps of the segment, twice where a row writes before a
chunk's last step (once when every row writes at a chunk's end, as with aligned segments); one write of
``num_slots x (num_slots + 2 * segment_len)`` scores per chunk; state ``num_slots x d_model`` plus
``2 x (segment_len - 1) x d_model`` per row and layer. Train with ``memory_models.mrbp`` to
back-propagate through many segments at the memory cost of one.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memory_models.attention import RelativeMultiHeadAttention, TransformerLayer, contiguous_distance, episode_ages
from memory_models.base import MemoryModel, MemoryRecord, MemoryState


@dataclasses.dataclass
class MemformerState(MemoryState):
    memory: Tensor  # B x n_layers x num_slots x D: what the row reads now
    context: list[Tensor]  # per layer B x (segment_len - 1) x D: self-attention inputs of the last steps
    outputs: list[Tensor]  # per layer B x (segment_len - 1) x D: layer outputs of the last steps
    episode_age: Tensor  # B: steps since the current episode began, at the last step (-1: none yet)


@dataclasses.dataclass
class _Pass:
    """One pass of the layers over a chunk: its outputs and per-layer [cache, chunk] hidden states."""

    h: Tensor  # B x C x D
    context: list[Tensor]  # per layer B x (K + C) x D
    outputs: list[Tensor]  # per layer B x (K + C) x D


class MemoryReadLayer(nn.Module):
    """Memory cross attention, then the shared self-attention + feed-forward layer."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, segment_len: int):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.read = RelativeMultiHeadAttention(d_model, n_heads, dropout)
        self.dropout = nn.Dropout(dropout)
        self.block = TransformerLayer(d_model, n_heads, dropout, n_positions=segment_len)


class Memformer(MemoryModel):
    static_state = True

    def __init__(
        self,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        dropout: float = 0.0,
        num_slots: int = 8,
        segment_len: int = 16,
    ):
        """num_slots: memory slots per layer; segment_len: steps between memory writes."""
        super().__init__()
        if num_slots < 1 or segment_len < 1:
            raise ValueError(f"num_slots and segment_len must be at least 1, got {num_slots} and {segment_len}")
        self.d_model, self.n_layers = d_model, n_layers
        self.num_slots, self.segment_len = num_slots, segment_len
        self.layers = nn.ModuleList(MemoryReadLayer(d_model, n_heads, dropout, segment_len) for _ in range(n_layers))
        self.write_norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_layers))
        self.writes = nn.ModuleList(RelativeMultiHeadAttention(d_model, n_heads, dropout) for _ in range(n_layers))
        self.initial_memory = nn.Parameter(torch.randn(n_layers, num_slots, d_model))  # L x S x D
        self.memory_bias = nn.Parameter(torch.zeros(n_layers, num_slots, d_model))  # L x S x D
        self.out_norm = nn.LayerNorm(d_model)

    def initial_state(self, batch_size: int, device: torch.device | str) -> MemformerState:
        memory = self.initial_memory.to(device).unsqueeze(0).expand(batch_size, -1, -1, -1)  # B x L x S x D
        cache = memory.new_zeros(batch_size, self.segment_len - 1, self.d_model)
        return MemformerState(
            memory=memory,
            context=[cache] * self.n_layers,
            outputs=[cache] * self.n_layers,
            episode_age=torch.full((batch_size,), -1, device=device, dtype=torch.long),
        )

    def forward(self, x: Tensor, state: MemformerState, first: Tensor) -> tuple[Tensor, MemformerState, MemoryRecord]:
        outputs, attended = [], x.new_zeros(())
        for start in range(0, x.shape[1], self.segment_len):  # a row completes at most one segment per chunk
            chunk = slice(start, start + self.segment_len)
            out, state, past = self._chunk(x[:, chunk], state, first[:, chunk])
            outputs.append(out)
            attended = attended + past
        memory_size = (attended / first.numel() + self.num_slots).expand(self.n_layers)
        record = MemoryRecord(aux_loss=x.new_zeros(()), memory_size=memory_size)
        return self.out_norm(torch.cat(outputs, dim=1)), state, record

    def _chunk(self, x: Tensor, state: MemformerState, first: Tensor) -> tuple[Tensor, MemformerState, Tensor]:
        """At most ``segment_len`` steps. Returns the B x C x D outputs (before the final norm), the
        next state, and the summed number of earlier steps the queries could attend to."""
        (batch, n_steps), n_cached = first.shape, self.segment_len - 1
        ages = episode_ages(first, state.episode_age)  # B x C
        distance = contiguous_distance(n_cached, n_steps, x.device)  # 1 x C x (K + C)
        in_segment = (distance >= 0) & (distance <= (ages % self.segment_len)[:, :, None])  # B x C x (K + C)
        steps = torch.arange(n_steps, device=x.device)  # C
        completes = ages % self.segment_len == self.segment_len - 1  # B x C
        write_step = torch.where(completes, steps, n_steps).amin(dim=1)  # B: C where the row does not write
        writes = write_step < n_steps  # B
        last_start = torch.where(first, steps, -1).cummax(dim=1).values  # B x C: -1 before any start
        initial = self.initial_memory.unsqueeze(0).expand(batch, -1, -1, -1)  # B x L x S x D

        # First pass: every step reads the memory the chunk began with (the initial one once an
        # episode has begun in the chunk); right for each step up to its row's write.
        before = self._layers(x, state, state.memory, last_start >= 0, distance, in_segment)
        restarted = (first & (steps <= write_step[:, None])).any(dim=1)  # B: the written segment's episode is new
        read = torch.where(restarted[:, None, None, None], initial, state.memory)  # B x L x S x D
        key_index = torch.arange(n_cached + n_steps, device=x.device)  # K + C
        segment = (key_index >= write_step[:, None]) & (key_index <= write_step[:, None] + n_cached)  # B x (K + C)
        written = self.write_memory(read, before.outputs, segment)  # B x L x S x D
        passes = before
        later = steps > write_step[:, None]  # B x C: steps after their row's write, which read the new memory
        # Skipping the second pass when no row writes before its last step (aligned segments, as in language
        # modelling) halves the cost for one host sync; a one-step call (acting) never syncs.
        if n_steps > 1 and bool(later.any()):
            after = self._layers(x, state, written, last_start > write_step[:, None], distance, in_segment)
            passes = _Pass(
                h=torch.where(later[..., None], after.h, before.h),
                context=[_merge(later, a, b) for a, b in zip(after.context, before.context, strict=True)],
                outputs=[_merge(later, a, b) for a, b in zip(after.outputs, before.outputs, strict=True)],
            )

        memory = torch.where(writes[:, None, None, None], written, state.memory)  # B x L x S x D
        restart_after = last_start[:, -1] > torch.where(writes, write_step, -1)  # B: a new episode since
        memory = torch.where(restart_after[:, None, None, None], initial, memory)
        next_state = MemformerState(
            memory=memory,
            context=[c[:, n_steps:] for c in passes.context],
            outputs=[o[:, n_steps:] for o in passes.outputs],
            episode_age=ages[:, -1],
        )
        return passes.h, next_state, (in_segment & (distance > 0)).sum()

    def _layers(
        self,
        x: Tensor,
        state: MemformerState,
        memory: Tensor,
        reads_initial: Tensor,
        distance: Tensor,
        in_segment: Tensor,
    ) -> _Pass:
        """The layers over a chunk; a step reads ``memory`` (B x L x S x D), or the initial memory
        where ``reads_initial`` (B x C) is set."""
        batch, slots = x.shape[0], self.num_slots
        choice = reads_initial[..., None].expand(-1, -1, slots)  # B x C x S
        read_allowed = torch.cat([~choice, choice], dim=-1)  # B x C x 2S: [memory slots, initial slots]
        h, contexts, outputs = x, [], []
        for i, layer in enumerate(self.layers):
            readable = torch.cat([memory[:, i], self.initial_memory[i].expand(batch, -1, -1)], dim=1)  # B x 2S x D
            h = h + layer.dropout(layer.read(layer.norm(h), readable, allowed=read_allowed))  # B x C x D
            context = torch.cat([state.context[i], h], dim=1)  # B x (K + C) x D
            h = layer.block(h, context, distance, in_segment)  # B x C x D
            contexts.append(context)
            outputs.append(torch.cat([state.outputs[i], h], dim=1))  # B x (K + C) x D
        return _Pass(h, contexts, outputs)

    def write_memory(self, memory: Tensor, layer_outputs: list[Tensor], segment: Tensor) -> Tensor:
        """The next memory, by memory slot attention: each slot sees itself and the segment's steps,
        never another slot.

        memory: B x L x S x D, the memory the segment read; layer_outputs: per layer B x N x D, the
        layer's outputs over N steps; segment: B x N bool, the steps of the completed segment.
        """
        batch, slots = memory.shape[0], self.num_slots
        own_slot = torch.eye(slots, dtype=torch.bool, device=memory.device).expand(batch, -1, -1)  # B x S x S
        allowed = torch.cat([own_slot, segment[:, None, :].expand(-1, slots, -1)], dim=-1)  # B x S x (S + N)
        written = []
        for i, (norm, write) in enumerate(zip(self.write_norms, self.writes, strict=True)):
            current = memory[:, i]  # B x S x D
            context = torch.cat([current, norm(layer_outputs[i])], dim=1)  # B x (S + N) x D
            update = write(current, context, allowed=allowed)  # B x S x D
            written.append(F.layer_norm(current + update, (self.d_model,)) + self.memory_bias[i])
        return torch.stack(written, dim=1)  # B x L x S x D


def _merge(later: Tensor, after: Tensor, before: Tensor) -> Tensor:
    """[cache, chunk] hidden states: the second pass's where ``later`` (B x C), else the first's."""
    n_steps = later.shape[1]
    chunk = torch.where(later[..., None], after[:, -n_steps:], before[:, -n_steps:])  # B x C x D
    return torch.cat([before[:, :-n_steps], chunk], dim=1)  # B x (K + C) x D
