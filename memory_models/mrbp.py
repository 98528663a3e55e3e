"""Memory replay back-propagation (MRBP, Memformer paper section 2.4, Algorithm 1).

Back-propagation through time over H segments keeps every segment's activations alive until the
backward pass, so its peak memory grows linearly with H. MRBP first runs forward over the horizon
without a graph, keeping only the memory state at each segment boundary (the replay buffer). It
then walks back from the last segment: it recomputes that segment's forward with a graph from the
stored state, back-propagates the segment's loss together with the gradient arriving on the state
it wrote, and hands the gradient on the state it read to the segment before. Parameter gradients
equal BPTT's over the same horizon; peak memory holds one segment's graph plus the small states.

The call a training loop makes (gradients accumulate into ``.grad`` as with ``loss.backward()``)::

    segments = [Segment(x, first, lambda out, record, y=y: ce(head(out), y) + record.aux_loss)
                for x, first, y in windows]
    result = memory_replay_backward(model, state, segments)
    optimizer.step(); optimizer.zero_grad()
    state = result.state  # detached memory after the horizon, carried into the next one

Dropout and other randomness replay exactly: each recomputation restarts from the random-number
state its segment saw in the forward sweep.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from memory_models.base import MemoryModel, MemoryRecord, MemoryState


@dataclasses.dataclass
class Segment:
    """One step of the rollout: inputs, episode starts, and how to turn outputs into a loss.

    x: B x T x d_model; first: B x T bool; loss_fn(out, record) -> scalar loss of this segment.
    ``x`` may carry a graph of its own (an embedding of tokens): it is back-propagated once, when
    the segment replays, so the segments' graphs must not share nodes that hold saved tensors.
    """

    x: Tensor
    first: Tensor
    loss_fn: Callable[[Tensor, MemoryRecord], Tensor]


@dataclasses.dataclass
class ReplayResult:
    loss: Tensor  # scalar, the summed segment losses (detached)
    state: MemoryState  # the memory after the last segment (detached)


def memory_replay_backward(model: MemoryModel, state: MemoryState, segments: Sequence[Segment]) -> ReplayResult:
    """Accumulate into ``.grad`` the gradient of the summed segment losses, as BPTT would.

    ``state`` is the memory before the first segment; if it carries a graph (a learned initial
    memory), the gradient flows into it as well.
    """
    if not segments:
        raise ValueError("segments must hold at least one Segment")
    device = segments[0].x.device
    boundary_states, rng_states = [state], []
    with torch.no_grad():
        for segment in segments[:-1]:
            rng_states.append(_rng_snapshot(device))
            _, state, _ = model(segment.x, state, segment.first)
            boundary_states.append(state)

    # The last segment runs once, with its graph, straight from the sweep's random state.
    last = len(segments) - 1
    state_grads, final_state, total = _replay(model, segments[last], boundary_states[last], [], last > 0)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for k in reversed(range(last)):
            _rng_restore(rng_states[k], device)
            state_grads, _, loss = _replay(model, segments[k], boundary_states[k], state_grads, k > 0)
            total = total + loss
    return ReplayResult(loss=total, state=final_state)


def _replay(
    model: MemoryModel, segment: Segment, state: MemoryState, next_grads: list[Tensor], needs_state_grad: bool
) -> tuple[list[Tensor], MemoryState, Tensor]:
    """Recompute one segment with a graph and back-propagate its loss plus ``next_grads``.

    Returns the gradients on the segment's input state tensors (empty when ``needs_state_grad``
    is False: the first segment lets them flow into whatever graph its state carries), the
    detached output state and the detached loss.
    """
    leaves: list[Tensor] = []
    if needs_state_grad:
        state = state.apply(lambda t: _as_leaf(t, leaves))
    out, next_state, record = model(segment.x, state, segment.first)
    loss = segment.loss_fn(out, record)
    written = [t for t in next_state.tensors() if t.is_floating_point()]
    if next_grads and len(written) != len(next_grads):
        raise RuntimeError("the model's state changed structure between segments")
    pairs = [(t, g) for t, g in zip(written, next_grads, strict=False) if t.requires_grad]
    torch.autograd.backward([loss, *(t for t, _ in pairs)], [torch.ones_like(loss), *(g for _, g in pairs)])
    grads = [leaf.grad if leaf.grad is not None else torch.zeros_like(leaf) for leaf in leaves]
    return grads, next_state.detach(), loss.detach()


def _as_leaf(t: Tensor, leaves: list[Tensor]) -> Tensor:
    """A detached copy of a floating state tensor that collects its gradient."""
    if not t.is_floating_point():
        return t
    leaf = t.detach().requires_grad_(True)
    leaves.append(leaf)
    return leaf


def _rng_snapshot(device: torch.device) -> tuple[Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _rng_restore(snapshot: tuple[Tensor, Tensor | None], device: torch.device) -> None:
    cpu, cuda = snapshot
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)
