"""The object collision task (Expire-Span paper, section 5.3, Figure 7, A.3.3), generated on the fly.

Two particles move on a ``grid x grid`` board: continuous positions start uniform in [0, grid)
and are rasterised to cells by flooring, velocities are standard Gaussian, and a move that would
leave the board is not made; the particle's velocity is re-sampled instead. Each particle has one
of 5 colours and switches to another colour with probability 0.05 per step. A collision is two
particles on the same rasterised cell (it does not change their motion).
Every step asks about a colour pair (unordered); with probability 0.4 it is the pair of the last
collision, otherwise a random pair. The answer is the quadrant (x >= grid/2) + 2 (y >= grid/2) of
the last collision of that pair; a question whose pair has not collided yet is not scored.

The easy version (paper A.2) has no colours: every step asks for the quadrant of the last collision
(the paper's question type (i); its type (ii), "the label mapping of the last 3 collisions", is too
loosely specified to reproduce and is left out).

Tokens, 8 per step, each slot with its own id range so the model can tell slots apart:
``x1, G + y1, 2G + x2, 3G + y2, 4G + colour1, 4G + colour2, 4G + 5 + question1, 4G + 5 + question2``
(colour and question slots hold ``NONE = 4G + 10`` in the easy version). The loss and the error rate
apply at each step's last token (the second question token), whose target is the quadrant.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sequence_tasks.batch import Batch

N_COLOURS = 5
N_QUADRANTS = 4
TOKENS_PER_STEP = 8
CHANGE_PROB = 0.05
MATCH_PROB = 0.4


def vocab_size(grid: int) -> int:
    return 4 * grid + 2 * N_COLOURS + 1


class CollisionSimulator:
    """``batch_size`` independent two-particle worlds advanced in lockstep."""

    def __init__(self, batch_size: int, grid: int, colours: bool, seed: Any):
        if grid < 2 or grid % 2:
            raise ValueError(f"grid must be an even number >= 2, got {grid}")
        self.grid, self.colours = grid, colours
        self.rng = np.random.default_rng(seed)
        self.position = self.rng.uniform(0, grid, size=(batch_size, 2, 2))  # B x particle x (x, y)
        self.velocity = self.rng.normal(size=(batch_size, 2, 2))  # B x particle x (x, y)
        n_colours = N_COLOURS if colours else 1
        self.colour = self.rng.integers(0, n_colours, size=(batch_size, 2))  # B x particle
        self.last_quadrant = np.full((batch_size, n_colours, n_colours), -1)  # B x colour x colour, -1: none yet
        self.last_pair = np.full((batch_size, 2), -1)  # B x 2: the colours of the last collision

    def step(self) -> dict[str, np.ndarray]:
        """Advance every world one step; return its cells, colours, question, answer and what happened."""
        batch = len(self.position)
        proposed = self.position + self.velocity  # B x 2 x 2
        off_grid = ((proposed < 0) | (proposed >= self.grid)).any(-1)  # B x 2
        self.position = np.where(off_grid[..., None], self.position, proposed)
        self.velocity = np.where(off_grid[..., None], self.rng.normal(size=self.velocity.shape), self.velocity)
        changed = np.zeros((batch, 2), dtype=bool)
        if self.colours:
            changed = self.rng.random((batch, 2)) < CHANGE_PROB
            shift = self.rng.integers(1, N_COLOURS, size=(batch, 2))  # a change always picks another colour
            self.colour = np.where(changed, (self.colour + shift) % N_COLOURS, self.colour)
        cell = np.floor(self.position).astype(np.int64)  # B x 2 x 2
        collided = (cell[:, 0] == cell[:, 1]).all(-1)  # B
        half = self.grid // 2
        quadrant = (cell[:, 0, 0] >= half).astype(np.int64) + 2 * (cell[:, 0, 1] >= half)  # B
        rows = np.flatnonzero(collided)
        pair = np.sort(self.colour[rows], axis=1)  # n x 2
        self.last_quadrant[rows, pair[:, 0], pair[:, 1]] = quadrant[rows]
        self.last_quadrant[rows, pair[:, 1], pair[:, 0]] = quadrant[rows]
        self.last_pair[rows] = pair
        ask_last = (self.rng.random(batch) < MATCH_PROB) & (self.last_pair[:, 0] >= 0)  # B
        random_pair = self.rng.integers(0, self.last_quadrant.shape[1], size=(batch, 2))  # B x 2
        question = np.where(ask_last[:, None], self.last_pair, random_pair)  # B x 2
        answer = self.last_quadrant[np.arange(batch), question[:, 0], question[:, 1]]  # B, -1 if unanswerable
        return {
            "cell": cell,
            "colour": self.colour.copy(),
            "question": question,
            "answer": answer,
            "collided": collided,
            "quadrant": quadrant,
            "off_grid": off_grid,
            "changed": changed,
            "asked_last": ask_last,
        }

    def state_dict(self) -> dict[str, Any]:
        arrays = ("position", "velocity", "colour", "last_quadrant", "last_pair")
        return {"rng": self.rng.bit_generator.state, **{name: getattr(self, name).copy() for name in arrays}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        for name, value in state.items():
            if name != "rng":
                setattr(self, name, value.copy())


def step_tokens(step: dict[str, np.ndarray], grid: int, colours: bool) -> np.ndarray:
    """B x 8 token ids of one simulated step (layout in the module docstring)."""
    cell = step["cell"]
    none = np.full(len(cell), 4 * grid + 2 * N_COLOURS)
    if colours:
        colour_tokens = [4 * grid + step["colour"][:, 0], 4 * grid + step["colour"][:, 1]]
        question_tokens = [4 * grid + N_COLOURS + step["question"][:, i] for i in range(2)]
    else:
        colour_tokens, question_tokens = [none, none], [none, none]
    positions = [cell[:, 0, 0], grid + cell[:, 0, 1], 2 * grid + cell[:, 1, 0], 3 * grid + cell[:, 1, 1]]
    return np.stack(positions + colour_tokens + question_tokens, axis=1)


class CollisionStream:
    """``batch_size`` endless rows of the collision task, ``block / 8`` steps per block."""

    def __init__(self, batch_size: int, block: int, grid: int, colours: bool, seed: Any):
        if block % TOKENS_PER_STEP:
            raise ValueError(f"block must be a multiple of {TOKENS_PER_STEP} (tokens per step), got {block}")
        self.block, self.grid, self.colours = block, grid, colours
        self.simulator = CollisionSimulator(batch_size, grid, colours, seed)

    def next_block(self) -> Batch:
        steps = [self.simulator.step() for _ in range(self.block // TOKENS_PER_STEP)]
        tokens = np.stack([step_tokens(s, self.grid, self.colours) for s in steps], axis=1)  # B x S x 8
        answer = np.stack([s["answer"] for s in steps], axis=1)  # B x S
        targets = np.zeros_like(tokens)
        mask = np.zeros(tokens.shape, dtype=bool)
        targets[:, :, -1] = np.maximum(answer, 0)
        mask[:, :, -1] = answer >= 0
        batch_size = len(tokens)
        return Batch(
            tokens=torch.from_numpy(tokens.reshape(batch_size, self.block)),
            targets=torch.from_numpy(targets.reshape(batch_size, self.block)),
            mask=torch.from_numpy(mask.reshape(batch_size, self.block)),
            first=torch.zeros(batch_size, self.block, dtype=torch.bool),
        )

    def state_dict(self) -> dict[str, Any]:
        return self.simulator.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.simulator.load_state_dict(state)
