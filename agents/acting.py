"""The acting step: the policy on one observation per env; eager, compiled, or replayed as a CUDA graph.

A one-step call of a transformer policy is a few hundred small operations whose overhead, not
their arithmetic, bounds it (about 5 ms per step at 1024 envs on a GPU, eager). Two remedies, which
combine: ``torch.compile`` fuses them into a few kernels, and ``GraphedActing`` captures the step
once as a CUDA graph and replays it, launching everything at once. Both need a memory model whose
state keeps its shapes from call to call and whose forward never waits on the host
(``static_state``): a graph reads fixed input buffers and writes fixed output buffers, and a
compiled step would recompile for every new shape.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import Tensor

from agents.policy import Policy
from memory_models import MemoryRecord, MemoryState

# (obs N x 3 x 3 x V, state, first N) -> logits N x A, value N, next state. Actions are sampled outside the
# step, so a step whose action is never taken (the bootstrap value at a window's end) draws no random numbers.
ActingStep = Callable[[Tensor, MemoryState, Tensor], tuple[Tensor, Tensor, MemoryState]]
WARMUP_STEPS = 3  # eager steps on a side stream before capture, as CUDA graph capture requires


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when asked for; a no-op otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")


def sample_actions(
    logits: Tensor, generator: torch.Generator | None = None, splits: tuple[int, ...] | None = None
) -> Tensor:
    """Gumbel-max sampling (no distribution object, no host sync); the global RNG unless ``generator`` is given.

    With ``splits`` (MultiDiscrete: logits per component, joined), one action per component: N x K."""
    noise = torch.rand(logits.shape, generator=generator, device=logits.device).clamp_(min=1e-20)  # N x A
    return greedy_actions(logits.float() - torch.log(-torch.log(noise)), splits)  # N, or N x K with splits


def greedy_actions(logits: Tensor, splits: tuple[int, ...] | None = None) -> Tensor:
    """The most likely action (N), or with ``splits`` the most likely value of each component (N x K)."""
    if splits is None:
        return logits.argmax(-1)
    return torch.stack([part.argmax(-1) for part in logits.split(splits, dim=-1)], dim=-1)  # N x K


def act(
    policy: Policy, obs: Tensor, state: MemoryState, first: Tensor
) -> tuple[Tensor, Tensor, MemoryState, MemoryRecord]:
    """One policy step for a batch: obs N x 3 x 3 x V, first N -> logits N x A, value N, next state, record."""
    logits, values, state, record = policy(obs.unsqueeze(1), state, first.unsqueeze(1))
    return logits[:, 0], values[:, 0], state, record


def eager_acting(policy: Policy, bf16: bool = False) -> ActingStep:
    """The acting step as plain calls."""

    @torch.no_grad()
    def step(obs: Tensor, state: MemoryState, first: Tensor) -> tuple[Tensor, Tensor, MemoryState]:
        with autocast(obs.device, bf16):
            logits, value, state, _ = act(policy, obs, state, first)
        return logits, value, state

    return step


def compiled_acting(policy: Policy, bf16: bool = False) -> ActingStep:
    """The acting step through ``torch.compile`` (static shapes: compiled once, on the first call)."""
    return torch.compile(eager_acting(policy, bf16), dynamic=False)


class GraphedActing:
    """An acting step captured as a CUDA graph for ``num_envs`` envs; called like the step it captures.

    The state it returns is its own input buffer, overwritten by the next call: clone what must outlive it.
    """

    def __init__(self, step: ActingStep, obs: Tensor, state: MemoryState, first: Tensor):
        """``step``: the eager or compiled step of a policy whose memory model has a ``static_state``."""
        if obs.device.type != "cuda":
            raise ValueError(f"a CUDA graph needs a CUDA device, got {obs.device}")
        self.obs, self.first, self.state = obs.clone(), first.clone(), state.apply(torch.clone)
        side = torch.cuda.Stream(obs.device)
        side.wait_stream(torch.cuda.current_stream(obs.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                step(self.obs, self.state, self.first)
        torch.cuda.current_stream(obs.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits, self.value, next_state = step(self.obs, self.state, self.first)
        self.next_state = next_state.tensors()
        self.state_buffers = self.state.tensors()

    def __call__(self, obs: Tensor, state: MemoryState, first: Tensor) -> tuple[Tensor, Tensor, MemoryState]:
        self.obs.copy_(obs)
        self.first.copy_(first)
        if state is not self.state:
            for buffer, tensor in zip(self.state_buffers, state.tensors(), strict=True):
                buffer.copy_(tensor)
        self.graph.replay()
        for buffer, tensor in zip(self.state_buffers, self.next_state, strict=True):
            buffer.copy_(tensor)  # the next replay reads the state this one wrote
        return self.logits.clone(), self.value.clone(), self.state
