"""Compressive Transformer (Rae et al. 2020): raw memories, then compressed ones.

Each layer sees its recent inputs raw (a Transformer-XL cache). Older steps are not dropped but
compressed: every ``c = compression_rate`` consecutive steps of an episode become one slot, by mean
pooling (``compression="mean"``) or a learned convolution of kernel and stride c (``"conv"``, a
linear map of the c members). A step is seen raw while the newest member of its group is at most
``mem_len`` steps back, then through its slot, which stays visible while that newest member is at
most ``mem_len + c * cmem_len`` steps back: every step is seen exactly once, raw or compressed, so a
query misses nothing within ``mem_len + c * cmem_len`` steps of its episode.

Details that make the model exact under the project's interface:
- groups are aligned to the episode start (steps [0, c), [c, 2c), ... of each episode), so an
  episode sees the same slots whatever came before it and however the sequence is cut into calls;
  a slot lies as far from a query as its newest step, and is visible while
  ``mem_len < distance <= mem_len + c * cmem_len`` (these are exactly the cmem_len newest
  compressed groups);
- a group leaves the raw window whole: the raw window of a query reaches up to ``mem_len + c - 1``
  steps back (the oldest members of a group whose newest is ``mem_len`` back), so the raw cache
  keeps ``mem_len + c - 1`` steps. The paper's raw memory is a FIFO of ``mem_len`` steps evicted and
  compressed a segment at a time; aligning groups to episodes instead keeps outputs independent of
  how a sequence is cut into calls, and seeing each group raw until its slot is visible keeps the
  paper's "every step is in one of the two memories";
- a group is compressed and stored once, at the end of the call after which its slot is visible,
  i.e. in the call whose last step lies ``mem_len`` or more steps after the group's newest;
- the task loss does not reach the compressor (compressed memories are stop-gradient, like every
  cached memory); the convolution is trained only by the attention-reconstruction loss: for every
  group stored in this call, the layer's attention (its parameters detached) from the window's
  inputs over the raw members versus over the compressed slots, squared error. Mean pooling has
  nothing to train and reports no such loss.

Cost per step and layer: attention over ``mem_len + c - 1 + T + cmem_len + (mem_len + c - 1 + T) // c`` keys.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from memory_models.attention import TransformerLayer, contiguous_distance, episode_ages, visible
from memory_models.base import MemoryModel, MemoryRecord, MemoryState

NEVER = 2**62  # the age of a slot that holds nothing: farther back than any episode reaches


@dataclasses.dataclass
class CompressiveState(MemoryState):
    memory: list[Tensor]  # per layer B x (mem_len + c - 1) x D: raw layer inputs of the last steps
    step_age: Tensor  # B x (mem_len + c - 1): each cached step's index in its episode (-1: none)
    compressed: list[Tensor]  # per layer B x cmem_len x D: compressed slots, oldest first
    compressed_age: Tensor  # B x cmem_len: steps from each slot's newest member to the last step
    episode_age: Tensor  # B: steps since the current episode began, at the last step (-1: none yet)


def _frozen(module: nn.Module, *args: Any, **kwargs: Any) -> Tensor:
    """Call ``module`` with its parameters detached: the result trains nothing in it."""
    return functional_call(module, {name: p.detach() for name, p in module.named_parameters()}, args, kwargs)


class Compressive(MemoryModel):
    static_state = True

    def __init__(
        self,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        dropout: float = 0.0,
        mem_len: int = 100,
        cmem_len: int = 50,
        compression_rate: int = 2,
        compression: str = "mean",
    ):
        """mem_len: a step is seen raw while its group's newest is at most this far back; cmem_len: compressed slots;
        compression_rate: steps per slot (c);
        compression: "mean" (pooling) or "conv" (learned, trained by the reconstruction loss)."""
        super().__init__()
        if compression not in ("mean", "conv"):
            raise ValueError(f"compression must be 'mean' or 'conv', got {compression!r}")
        if mem_len < 1 or cmem_len < 1 or compression_rate < 1:
            raise ValueError("mem_len, cmem_len and compression_rate must be at least 1")
        self.d_model, self.n_layers = d_model, n_layers
        self.mem_len, self.cmem_len, self.rate = mem_len, cmem_len, compression_rate
        self.cache_len = mem_len + compression_rate - 1
        self.reach = mem_len + cmem_len * compression_rate
        self.layers = nn.ModuleList(
            TransformerLayer(d_model, n_heads, dropout, n_positions=self.reach + 1) for _ in range(n_layers)
        )
        self.compressors = None
        if compression == "conv":
            self.compressors = nn.ModuleList(nn.Linear(compression_rate * d_model, d_model) for _ in range(n_layers))
        self.out_norm = nn.LayerNorm(d_model)

    def initial_state(self, batch_size: int, device: torch.device | str) -> CompressiveState:
        dtype = self.out_norm.weight.dtype

        def zeros(length: int) -> list[Tensor]:
            return [torch.zeros(batch_size, length, self.d_model, device=device, dtype=dtype) for _ in self.layers]

        return CompressiveState(
            memory=zeros(self.cache_len),
            step_age=torch.full((batch_size, self.cache_len), -1, device=device, dtype=torch.long),
            compressed=zeros(self.cmem_len),
            compressed_age=torch.full((batch_size, self.cmem_len), NEVER, device=device, dtype=torch.long),
            episode_age=torch.full((batch_size,), -1, device=device, dtype=torch.long),
        )

    def compress(self, layer: int, members: Tensor) -> Tensor:
        """B x G x c x D groups of raw memories -> B x G x D slots."""
        if self.compressors is None:
            return members.mean(dim=2)
        return self.compressors[layer](members.flatten(2))

    def forward(
        self, x: Tensor, state: CompressiveState, first: Tensor
    ) -> tuple[Tensor, CompressiveState, MemoryRecord]:
        batch, steps, width = x.shape
        mem_len, rate, n_cached = self.mem_len, self.rate, self.cache_len
        n_context = n_cached + steps
        ages = episode_ages(first, state.episode_age)  # B x T
        step_age = torch.cat([state.step_age, ages], dim=1)  # B x N

        start, valid = self._groups(step_age)  # B x G
        newest = start + rate - 1  # B x G: context column of each group's newest step
        members = (start[:, :, None] + torch.arange(rate, device=x.device)).flatten(1)  # B x (G * c)

        query = torch.arange(steps, device=x.device)[None, :, None]  # 1 x T x 1
        raw_distance = contiguous_distance(n_cached, steps, x.device).expand(batch, -1, -1)  # B x T x N
        # each key's index in the query's episode (meaningful where visible), then how far back its group's newest is
        key_index = ages[:, :, None] - raw_distance  # B x T x N
        newest_distance = raw_distance - (rate - 1 - key_index.remainder(rate))  # B x T x N
        slot_distance = torch.cat(
            [state.compressed_age[:, None, :] + 1 + query, n_cached + query - newest[:, None, :]], dim=2
        )  # B x T x (S + G)
        slot_valid = torch.cat([state.compressed_age < NEVER, valid], dim=1)  # B x (S + G)
        distance = torch.cat([raw_distance, slot_distance], dim=2)  # B x T x keys
        allowed = torch.cat(
            [
                visible(raw_distance, ages) & (newest_distance <= mem_len),  # raw until the slot is visible
                visible(slot_distance, ages, self.reach) & (slot_distance > mem_len) & slot_valid[:, None, :],
            ],
            dim=2,
        )  # B x T x keys
        # Groups whose first step leaves the raw cache now are stored, and get the reconstruction loss, in this call:
        # then the last query lies mem_len or more steps after their newest, so the next call sees their slots.
        fresh = valid & (start < steps)  # B x G
        fresh_members = torch.zeros_like(step_age).scatter_add(1, members, fresh.repeat_interleave(rate, 1).long())

        h, memory, compressed, aux_loss = x, [], [], x.new_zeros(())
        for index, (layer, cache, slots) in enumerate(zip(self.layers, state.memory, state.compressed, strict=True)):
            context = torch.cat([cache, h], dim=1)  # B x N x D
            member_inputs = context.detach().gather(1, members[:, :, None].expand(-1, -1, width))
            new_slots = self.compress(index, member_inputs.unflatten(1, (-1, rate)))  # B x G x D
            keys = torch.cat([context, slots, new_slots.detach()], dim=1)  # B x (N + S + G) x D
            if self.compressors is not None:
                aux_loss = aux_loss + self._reconstruction_loss(layer, h, context, fresh_members > 0, new_slots, fresh)
            memory.append(context[:, -n_cached:].detach())
            compressed.append(torch.cat([slots, new_slots.detach()], dim=1))  # B x (S + G) x D
            h = layer(h, keys, distance, allowed)  # B x T x D

        # The slots kept are the cmem_len newest of those stored before and those stored now.
        pool_age = torch.cat([state.compressed_age + steps, n_context - 1 - newest], dim=1)  # B x (S + G)
        storable = torch.cat([state.compressed_age < NEVER, fresh], dim=1)  # B x (S + G)
        order = torch.argsort(storable.to(torch.uint8), dim=1, stable=True)[:, -self.cmem_len :]  # B x S
        compressed_age = torch.where(storable.gather(1, order), pool_age.gather(1, order), NEVER)
        compressed = [pool.gather(1, order[:, :, None].expand(-1, -1, width)) for pool in compressed]

        size = (allowed & (distance > 0)).sum(-1).to(x.dtype).mean()  # same reach in every layer
        record = MemoryRecord(
            aux_loss=aux_loss,
            memory_size=size.expand(self.n_layers),
            spans=x.new_full((self.n_layers, batch, steps), float(self.reach)),
        )
        next_state = CompressiveState(memory, step_age[:, -n_cached:], compressed, compressed_age, ages[:, -1])
        return self.out_norm(h), next_state, record

    def _groups(self, step_age: Tensor) -> tuple[Tensor, Tensor]:
        """The groups a context can hold: c consecutive steps of one episode, the first at an index
        divisible by c. Returns their first columns and whether each is real (B x G each, G = N // c:
        groups do not overlap, so no row has more)."""
        rate, n_context = self.rate, step_age.shape[1]
        head, tail = step_age[:, : n_context - rate + 1], step_age[:, rate - 1 :]  # B x (N - c + 1)
        complete = (head >= 0) & (head % rate == 0) & (tail == head + rate - 1)
        start = torch.argsort((~complete).to(torch.uint8), dim=1, stable=True)[:, : n_context // rate]
        return start, complete.gather(1, start)

    @staticmethod
    def _reconstruction_loss(
        layer: TransformerLayer, h: Tensor, context: Tensor, raw_mask: Tensor, slots: Tensor, slot_mask: Tensor
    ) -> Tensor:
        """Squared error between attention over raw members and over their compressed slots.

        Everything but ``slots`` is detached, and so are the layer's parameters: the loss trains
        the compressor alone. raw_mask: B x N members to compress; slot_mask: B x G their slots.
        """
        query = layer.attention_input(h).detach()  # B x T x D
        raw = layer.attention_input(context).detach()  # B x N x D
        compressed = _frozen(layer.norm1, slots) if layer.pre_norm else slots  # B x G x D
        target = _frozen(layer.attention, query, raw, allowed=raw_mask[:, None, :])
        predicted = _frozen(layer.attention, query, compressed, allowed=slot_mask[:, None, :])
        return (predicted - target).pow(2).mean()
