"""Scripted agents for Instruction (`envs.instruction`), on the batched twin: what perfect memory
scores, and what the best strategies that do not remember the instructions score.

Every agent reads the twin's state (the agent's cell, the layout, the step count, who is present),
so each is at least as strong as a policy that would have to infer that state from its
observations. They differ in what they may know about the instructions:

- `oracle`: perfect memory. Walks to the target of the pending instruction whose target returns
  first, waits in front of its niche and says the right sender once it is back.
- `guess`: knows everything the oracle knows except the sender (where, when, who), and says a
  sender drawn uniformly among the others: the upper bound of every strategy that does not
  remember the sender, (n_characters - 1) ** -n_instructions.
- `wait_and_guess`: what a memoryless agent can do with the map in its weights (fixed homes):
  patrols the homes, waits at a home whose niche is walled up (its character away, so a target)
  until the character comes back, then guesses the sender.
- `patrol_guess`: patrols every niche slot and, in front of a character, guesses a sender with
  probability 0.2 (it cannot tell who has something ready).
- `speak_to_all`: patrols every niche slot and guesses a sender to every character it meets.
- `silence`: patrols and never speaks.

`evaluate(strategy, episodes, **env_kwargs)` plays one episode per env and returns the success rate
and mean counters; `runners/bench_instruction_scripted.py` prints them for the shipped presets.
"""

from collections import deque
from typing import Any

import numpy as np
import torch

from envs.instruction import (
    MOVES,
    NORTH,
    SLOTS_PER_ROOM,
    SOUTH,
    front_cell,
    niche_cell,
)
from envs.instruction_batched import BatchedInstructionEnv

STRATEGIES = ("oracle", "guess", "wait_and_guess", "patrol_guess", "speak_to_all", "silence")
MEMORYLESS = STRATEGIES[1:]
PATROL_SPEECH_PROB = 0.2  # patrol_guess: how often it speaks to a character it passes


def navigation_table(twin: BatchedInstructionEnv) -> torch.Tensor:
    """n_slots x (H*W) int64: per niche slot and floor cell, a move one step closer (by breadth-first
    search) to the slot's front cell; at the front cell itself, the move into the niche, which
    leaves the agent in place (waiting)."""
    reference = twin.reference
    grid, width, height = reference.static_grid(), reference.width, reference.height
    n_slots = SLOTS_PER_ROOM * reference.n_rooms
    table = np.full((n_slots, height * width), NORTH)
    for slot in range(n_slots):
        goal = front_cell(slot)
        table[slot, goal[1] * width + goal[0]] = NORTH if niche_cell(slot)[1] == 0 else SOUTH
        seen, queue = {goal}, deque([goal])
        while queue:  # outwards from the goal: the first move found into a cell's parent leads home
            x, y = queue.popleft()
            for action, (dx, dy) in enumerate(MOVES):
                cell = (x - dx, y - dy)  # from `cell`, `action` steps onto (x, y)
                if cell not in seen and grid.get(*cell) is None:
                    seen.add(cell)
                    table[slot, cell[1] * width + cell[0]] = action
                    queue.append(cell)
    return torch.as_tensor(table, device=twin.device)


class ScriptedAgent:
    """One of `STRATEGIES` acting in every env of `twin`; call `act()` before each `twin.step` and
    `episodes_ended(done)` after it."""

    def __init__(self, twin: BatchedInstructionEnv, strategy: str, seed: int = 0):
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        self.twin, self.strategy, dev = twin, strategy, twin.device
        self.generator = torch.Generator(dev).manual_seed(seed)
        self.navigation = navigation_table(twin)  # n_slots x (H*W)
        width, n_slots = twin.reference.width, self.navigation.shape[0]
        self.front = torch.tensor([y * width + x for x, y in map(front_cell, range(n_slots))], device=dev)  # per slot
        loop = [SLOTS_PER_ROOM * room + j for room in range(twin.reference.n_rooms) for j in (0, 1, 3, 2)]
        self.loop = torch.tensor(loop, device=dev)  # the patrol: around each room, west to east
        self.rank = torch.empty_like(self.loop).scatter_(0, self.loop, torch.arange(n_slots, device=dev))  # slot's stop
        self.stop = torch.zeros(twin.num_envs, dtype=torch.int64, device=dev)  # patrol progress per env
        self.waited = torch.zeros(twin.num_envs, dtype=torch.bool, device=dev)  # wait_and_guess: saw the niche empty

    def episodes_ended(self, done: torch.Tensor) -> None:
        """Forget the patrol progress of the envs whose episode ended (N,) bool."""
        self.stop.masked_fill_(done, 0)
        self.waited.masked_fill_(done, False)

    def act(self) -> torch.Tensor:
        """Actions (N,) int64 for the twin's current observations."""
        twin = self.twin
        cell = twin.y * twin.reference.width + twin.x  # N, flat cell index
        present = twin._present(twin.step_count)  # N x C
        if self.strategy in ("oracle", "guess"):
            return self._serve(cell, present)
        return self._patrol(cell, present)

    def _random_sender(self, listener: torch.Tensor) -> torch.Tensor:
        """A sender (N,) drawn uniformly among the characters other than `listener` (N,)."""
        c = self.twin.reference.n_characters
        draw = torch.randint(0, c - 1, listener.shape, generator=self.generator, device=listener.device)
        return (listener + 1 + draw) % c

    def _serve(self, cell: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """oracle and guess: go to the target that returns first, wait, speak once it is back."""
        twin, layouts = self.twin, self.twin.layouts
        pending = (layouts["times"] <= twin.step_count.unsqueeze(1)) & ~twin.right & ~twin.failed  # N x K
        returns = torch.where(pending, layouts["times"], torch.iinfo(torch.int64).max)  # N x K; one delay per env
        goal = returns.argmin(1, keepdim=True)  # N x 1: the pending instruction whose target returns first
        target = layouts["targets"].gather(1, goal).squeeze(1)  # N
        slot = layouts["homes"].gather(1, target.unsqueeze(1)).squeeze(1)  # N
        back = present.gather(1, target.unsqueeze(1)).squeeze(1)  # N
        speak = pending.any(1) & (self.front.take(slot) == cell) & back
        sender = layouts["senders"].gather(1, goal).squeeze(1)
        if self.strategy == "guess":
            sender = self._random_sender(target)
        move = torch.where(pending.any(1), self.navigation[slot, cell], NORTH)  # nothing pending: idle
        return torch.where(speak, len(MOVES) + sender, move)

    def _patrol(self, cell: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """The strategies that walk a patrol of niche slots and guess senders."""
        layouts, n = self.twin.layouts, self.twin.num_envs
        if self.strategy == "wait_and_guess":
            route = layouts["homes"].gather(1, self.rank.take(layouts["homes"]).argsort(1))  # N x C, in patrol order
        else:
            route = self.loop.expand(n, -1)  # N x n_slots
        slot = route.gather(1, (self.stop % route.shape[1]).unsqueeze(1)).squeeze(1)  # N, the slot being visited
        at_front = self.front.take(slot) == cell  # N
        in_slot = layouts["homes"] == slot.unsqueeze(1)  # N x C, at most one
        listener = in_slot.long().argmax(1)  # N, meaningful where someone lives in the slot
        here = at_front & (in_slot & present).any(1)  # N: a character stands in front of the agent
        if self.strategy == "wait_and_guess":
            empty_home = at_front & in_slot.any(1) & ~here
            self.waited |= empty_home
            speak = here & self.waited
            self.waited &= ~speak
            leave = at_front & ~empty_home
        else:
            chance = {"patrol_guess": PATROL_SPEECH_PROB, "speak_to_all": 1.0, "silence": 0.0}[self.strategy]
            speak = here & (torch.rand(n, generator=self.generator, device=cell.device) < chance)
            leave = at_front
        self.stop += leave
        slot = route.gather(1, (self.stop % route.shape[1]).unsqueeze(1)).squeeze(1)  # N, where to go next
        return torch.where(speak, len(MOVES) + self._random_sender(listener), self.navigation[slot, cell])


def evaluate(strategy: str, episodes: int = 300, seed: int = 0, **env_kwargs: Any) -> dict[str, float]:
    """Play one episode in each of `episodes` envs with `strategy`: the success rate and, per
    episode, the mean return and instructions right and wrong."""
    twin = BatchedInstructionEnv(episodes, **env_kwargs)
    agent = ScriptedAgent(twin, strategy, seed)
    twin.reset(seed=seed)
    first = torch.ones(episodes, dtype=torch.bool)  # envs still in their first episode
    totals = dict.fromkeys(("success", "return", "right", "wrong"), 0.0)
    while first.any():
        _, _, terminated, truncated, info = twin.step(agent.act())
        done = terminated | truncated
        ended = done & first
        totals["success"] += float(info["success"][ended].sum())
        totals["return"] += float(info["episode_return"][ended].sum())
        totals["right"] += float(info["instructions_right"][ended].sum())
        totals["wrong"] += float(info["instructions_wrong"][ended].sum())
        first &= ~done
        agent.episodes_ended(done)
    return {key: value / episodes for key, value in totals.items()}
