"""The one interface every memory model implements.

A memory model maps a window of inputs ``x`` (B x T x D) to outputs of the same shape while
carrying a typed memory state from one window to the next. ``first[b, t]`` marks that step ``t``
of row ``b`` begins a new episode: nothing that row saw before ``t`` may influence its outputs at
or after ``t``. That rule is what lets an RL learner carry memory across fixed-length windows
while the environments in a batch end at different times.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

StateT = TypeVar("StateT", bound="MemoryState")


def _map_tensors(value: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_map_tensors(v, fn) for v in value)
    if isinstance(value, MemoryState):
        return value.apply(fn)
    return value


@dataclasses.dataclass
class MemoryState:
    """Base of every model's memory state.

    Subclasses are dataclasses whose fields are tensors with the batch as their first dimension,
    lists or tuples of such tensors (one per layer), nested states, or plain Python values that
    are shared by all rows (for example a step counter). Keeping the batch first in every tensor
    is what lets the generic methods below detach, move and index any model's state.
    """

    def apply(self: StateT, fn: Callable[[Tensor], Tensor]) -> StateT:
        """A copy of the state with ``fn`` applied to every tensor."""
        changes = {f.name: _map_tensors(getattr(self, f.name), fn) for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **changes)

    def tensors(self) -> list[Tensor]:
        """Every tensor of the state, in field order (the order ``apply`` visits them)."""
        found: list[Tensor] = []
        self.apply(lambda t: found.append(t) or t)
        return found

    def detach(self: StateT) -> StateT:
        """Cut the gradient path into the past (truncated BPTT)."""
        return self.apply(lambda t: t.detach())

    def to(self: StateT, device: torch.device | str) -> StateT:
        return self.apply(lambda t: t.to(device))

    def rows(self: StateT, index: Tensor | slice | list[int]) -> StateT:
        """The state of the batch rows ``index`` (a slice, a list or a tensor of row indices)."""
        return self.apply(lambda t: t[index])


@dataclasses.dataclass
class MemoryRecord:
    """What a forward pass reports beside its output.

    aux_loss: scalar tensor added to the task loss (zero for models without one).
    memory_size: n_layers tensor, the mean number of past positions each query could attend to
        (the Expire-Span paper's |C_t|), per layer.
    spans: n_layers x B x T tensor of how many steps each new position is kept (the expire-span
        e_i, an adaptive span, a cache length), or None for models without positional memory.
        Renderers and TensorBoard histograms read it.
    """

    aux_loss: Tensor
    memory_size: Tensor
    spans: Tensor | None = None


class MemoryModel(nn.Module, ABC):
    """A sequence model with memory that respects episode boundaries inside a batch."""

    d_model: int
    n_layers: int
    # True when a call returns a state of the same shapes as the one it was given and a one-step call never waits
    # on the host: then the acting step can be compiled once and captured as a CUDA graph (agents/acting.py).
    static_state: bool = False

    @abstractmethod
    def initial_state(self, batch_size: int, device: torch.device | str) -> MemoryState:
        """The empty memory for ``batch_size`` rows."""

    @abstractmethod
    def forward(self, x: Tensor, state: MemoryState, first: Tensor) -> tuple[Tensor, MemoryState, MemoryRecord]:
        """Process a window.

        x: B x T x d_model inputs; state: the memory before the window; first: B x T bool,
        True where a step starts a new episode. Returns the B x T x d_model outputs, the memory
        after the window, and the record of auxiliary loss and memory size.
        """

    def begin_window(self, state: StateT) -> StateT:
        """The state with the randomness one training window shares drawn afresh (Expire-Span's shortening).

        A learner that acts one step at a time and then recomputes the window from its start state
        calls this once at the window's start, so that acting and the recompute see the same draw: the
        policy that acted is the policy that learns. Models without such randomness return ``state``.
        """
        return state

    def clamp_parameters(self) -> None:
        """Put parameters with bounds back inside them; training loops call it after each optimiser step
        (through ``memory_models.clamp_parameters``). Adaptive-Span clamps its span ratios; the others have none."""

    def no_record(self, x: Tensor) -> MemoryRecord:
        """The record of a model with no auxiliary loss and no positional memory."""
        return MemoryRecord(aux_loss=x.new_zeros(()), memory_size=x.new_zeros(self.n_layers))
