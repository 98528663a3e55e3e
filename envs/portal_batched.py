"""The batched torch twin of Portal (`envs.portal`), for N envs at once.

State per env: the current `room` (0-based), the agent's floor cell (`px`, `py`, 0..4) in it, the
`mistakes` made in each room this episode (N x n_rooms), and the layout (`correct`, N x (n_rooms - 1)).
All rooms look alike, so the window depends only on the room (its `room_k` word) and the floor
cell: n_rooms x 25 windows, tabulated once from the reference env's own observations.
"""

import torch

from envs.batched import BatchedWordGridEnv
from envs.portal import ENTRY, ROOM_SIZE, PortalEnv

MOVE_DX = (0, 1, 0, -1)  # per action: north, east, south, west
MOVE_DY = (-1, 0, 1, 0)


class BatchedPortalEnv(BatchedWordGridEnv):
    """N Portal envs in torch tensors; rules in `envs.portal`."""

    reference_class = PortalEnv
    state_names = ("room", "px", "py", "mistakes")

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        render_mode: str | None = None,
        n_rooms: int = 50,
        max_steps: int = 1000,
    ):
        super().__init__(num_envs, device, render_mode, n_rooms=n_rooms, max_steps=max_steps)
        self.n_rooms = n_rooms

        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(num_envs, *shape, dtype=torch.int64, device=self.device)

        self.room, self.px, self.py, self.mistakes = zeros(), zeros(), zeros(), zeros(n_rooms)
        self._dx = torch.tensor(MOVE_DX, device=self.device)
        self._dy = torch.tensor(MOVE_DY, device=self.device)
        self._rewards = torch.tensor(self.reference.rewards + [0.0], dtype=torch.float32, device=self.device)
        self._windows = self._tabulate_windows()  # (n_rooms * 25) x 9V

    def _tabulate_windows(self) -> torch.Tensor:
        """Window k = 25 room + 5 py + px, from the reference env."""
        windows = []
        for room in range(self.n_rooms):
            for y in range(ROOM_SIZE):
                for x in range(ROOM_SIZE):
                    self.reference.grid = self.reference.rooms_grid
                    self.reference.place_agent_in(room, x, y)
                    windows.append(self.reference.gen_obs())
        return self.window_table(windows)

    def _sample_layouts(self) -> dict[str, torch.Tensor]:
        return {"correct": self.random_bits(self.n_rooms - 1)}

    def _begin_episodes(self, new: torch.Tensor) -> None:
        self.room.masked_fill_(new, 0)
        self.px.masked_fill_(new, ENTRY)
        self.py.masked_fill_(new, ENTRY)
        self.mistakes.masked_fill_(new.unsqueeze(1), 0)

    def _transition(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.px + self._dx.index_select(0, actions)
        y = self.py + self._dy.index_select(0, actions)
        through_wall = (y < 0) | (y >= ROOM_SIZE)
        door = (self.px == ENTRY) & through_wall  # the doors sit mid north wall and mid south wall
        room = self.room.unsqueeze(1)  # N x 1
        right = door & ((y >= ROOM_SIZE).long() == self.layouts["correct"].gather(1, room).squeeze(1))
        wrong = door & ~right
        self.mistakes.scatter_add_(1, room, wrong.long().unsqueeze(1))
        second_mistake = wrong & (self.mistakes.gather(1, room).squeeze(1) >= 2)
        success = right & (self.room == self.n_rooms - 2)
        reward = self._rewards[self.room] * right
        self.room = torch.where(right, self.room + 1, self.room.masked_fill(wrong, 0))
        inside = ~through_wall & (x >= 0) & (x < ROOM_SIZE)
        self.px = torch.where(door, ENTRY, torch.where(inside, x, self.px))
        self.py = torch.where(door, ENTRY, torch.where(inside, y, self.py))
        return reward, success | second_mistake, success

    def _observe(self) -> torch.Tensor:
        index = self.room * ROOM_SIZE**2 + self.py * ROOM_SIZE + self.px  # N
        return self.encode_windows(self._windows, index)

    def reference_view(self, i: int) -> PortalEnv:
        self.reference.reset(options={"layout": self.layout(i)})
        self.reference.place_agent_in(int(self.room[i]), int(self.px[i]), int(self.py[i]))
        self.reference.mistakes[:] = self.mistakes[i].cpu().numpy()
        self.reference.step_count = int(self.step_count[i])
        return self.reference
