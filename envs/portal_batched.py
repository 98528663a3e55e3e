"""The batched torch twin of Portal (`envs.portal`), for N envs at once.

State per env: the current `room` (0-based), the agent's floor cell `cell` = 5 y + x (0..24) in it,
and `mistakes`, a bit mask of the rooms where it erred this episode (a second mistake ends it, so
one bit per room suffices). The layout is a bit mask too: bit k of `layouts["correct"]` is the
layout value of room k + 1 (1: its south door is right), so the twin accepts up to `MAX_ROOMS`
rooms (62 bits of one int64 draw); `layout(i)` unpacks it into the reference's array. Keeping every
per-env quantity one int64 keeps a step at about 35 small torch ops. `layouts["rooms"]` holds each
episode's rooms in play, so that `set_task(active_rooms=k)` (a rooms curriculum) changes only the
episodes that begin after it.

All rooms are alike, so moving within a room is tabulated once per (cell, action): the cell it leads
to (the entry cell after a door: the agent always lands on one) and the door it enters, if any.
The window depends only on the room (its `room_k` word) and the cell: n_rooms x 25 windows, drawn
once from the reference env's own observations.
"""

import numpy as np
import torch

from envs.base import MOVES
from envs.batched import BatchedWordGridEnv
from envs.checks import check_int
from envs.portal import ENTRY, ROOM_SIZE, PortalEnv

NO_DOOR, NORTH_DOOR, SOUTH_DOOR = 0, 1, 2  # a door's code is 1 + its layout value
ENTRY_CELL = ROOM_SIZE * ENTRY + ENTRY
MAX_ROOMS = 63


class BatchedPortalEnv(BatchedWordGridEnv):
    """N Portal envs in torch tensors; rules in `envs.portal`."""

    reference_class = PortalEnv
    state_names = ("room", "cell", "mistakes")
    curriculum_params = ("active_rooms",)

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        render_mode: str | None = None,
        n_rooms: int = 50,
        max_steps: int = 1000,
        active_rooms: int | None = None,
    ):
        check_int("n_rooms", n_rooms, 2, MAX_ROOMS)
        super().__init__(num_envs, device, render_mode, n_rooms=n_rooms, max_steps=max_steps, active_rooms=active_rooms)
        self.n_rooms = n_rooms
        self.active_rooms = self.reference.active_rooms  # drawn into the layouts of new episodes
        self.room = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self.cell = torch.full((num_envs,), ENTRY_CELL, dtype=torch.int64, device=self.device)
        self.mistakes = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self._rewards = torch.tensor(self.reference.rewards, dtype=torch.float32, device=self.device)  # per room
        self._tabulate_moves()
        self._windows = self._tabulate_windows()  # (n_rooms * 25) x 9V

    def _tabulate_moves(self) -> None:
        """Flat tables indexed 4 cell + action: the next cell, and the door entered (NO_DOOR, ...)."""
        next_cell = np.zeros((ROOM_SIZE**2, len(MOVES)), dtype=np.int64)
        door = np.zeros_like(next_cell)
        for cell in range(ROOM_SIZE**2):
            y, x = divmod(cell, ROOM_SIZE)
            for action, (dx, dy) in enumerate(MOVES):
                to_x, to_y = x + dx, y + dy
                if x == ENTRY and not 0 <= to_y < ROOM_SIZE:
                    door[cell, action] = NORTH_DOOR if to_y < 0 else SOUTH_DOOR
                    next_cell[cell, action] = ENTRY_CELL
                elif 0 <= to_x < ROOM_SIZE and 0 <= to_y < ROOM_SIZE:
                    next_cell[cell, action] = ROOM_SIZE * to_y + to_x
                else:  # a wall
                    next_cell[cell, action] = cell
        self._next_cell = torch.as_tensor(next_cell.reshape(-1), device=self.device)
        self._door = torch.as_tensor(door.reshape(-1), device=self.device)

    def _tabulate_windows(self) -> torch.Tensor:
        """Window 25 room + cell, from the reference env."""
        windows = []
        for room in range(self.n_rooms):
            for cell in range(ROOM_SIZE**2):
                self.reference.grid = self.reference.rooms_grid
                self.reference.place_agent_in(room, cell % ROOM_SIZE, cell // ROOM_SIZE)
                windows.append(self.reference.gen_obs())
        return self.window_table(windows)

    def _sample_layouts(self) -> dict[str, torch.Tensor]:
        masks = 2 ** (self.n_rooms - 1)  # every bit uniform and independent
        draw = torch.randint(0, masks, (self.num_envs,), generator=self.generator, device=self.device)
        rooms = torch.full((self.num_envs,), self.active_rooms, dtype=torch.int64, device=self.device)
        return {"correct": draw, "rooms": rooms}

    def _set_task(self, params: dict[str, int]) -> None:
        self.active_rooms = check_int("active_rooms", params["active_rooms"], 2, self.n_rooms)

    def _begin_episodes(self, new: torch.Tensor) -> None:
        self.room.masked_fill_(new, 0)
        self.cell.masked_fill_(new, ENTRY_CELL)
        self.mistakes.masked_fill_(new, 0)

    def _transition(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        flat = torch.add(actions, self.cell, alpha=4)  # N
        door = self._door.index_select(0, flat)  # N: NO_DOOR, NORTH_DOOR or SOUTH_DOOR
        right_door = ((self.layouts["correct"] >> self.room) & 1) + 1  # the room is never the last
        right = door == right_door
        wrong = door + right_door == NORTH_DOOR + SOUTH_DOOR
        second_mistake = wrong & ((self.mistakes >> self.room) & 1).bool()
        self.mistakes |= wrong.long() << self.room
        success = right & (self.room == self.layouts["rooms"] - 2)
        reward = self._rewards.index_select(0, self.room) * right
        self.room = torch.where(right, self.room + 1, self.room.masked_fill(wrong, 0))
        self.cell = self._next_cell.index_select(0, flat)
        return reward, success | second_mistake, success

    def _observe(self) -> torch.Tensor:
        return self.encode_windows(self._windows, torch.add(self.cell, self.room, alpha=ROOM_SIZE**2))

    def layout(self, i: int) -> dict[str, np.ndarray]:
        return {
            "correct": (int(self.layouts["correct"][i]) >> np.arange(self.n_rooms - 1)) & 1,
            "rooms": np.array(int(self.layouts["rooms"][i]), dtype=np.int64),
        }

    def reference_view(self, i: int) -> PortalEnv:
        self.reference.reset(options={"layout": self.layout(i)})
        y, x = divmod(int(self.cell[i]), ROOM_SIZE)
        self.reference.place_agent_in(int(self.room[i]), x, y)
        self.reference.mistakes[:] = (int(self.mistakes[i]) >> np.arange(self.n_rooms)) & 1
        self.reference.step_count = int(self.step_count[i])
        return self.reference
