"""Portal through multiple rooms (Expire-Span paper, section 5.2 and appendix A.3.1): remember a sequence.

Rules:
- `n_rooms` rooms (default 50), numbered 1..n_rooms, each a 5x5 floor walled in, laid out in rows
  of up to ten (the layout only matters for the picture: rooms connect by teleport). Every room has
  a red door in the middle of its north wall and a blue door in the middle of its south wall.
- Which door of each room is correct is drawn per episode (uniform) and fixed within it; nothing
  shows it. The agent starts at the entry cell of room 1, the centre of the room.
- Actions: 0 north, 1 east, 2 south, 3 west. Moving into a wall leaves the agent in place.
  Moving into a door:
  - the correct door of room k teleports the agent to the entry cell of room k + 1, reward 0.1 k;
    reaching the last room in play ends the episode (terminated, success);
  - the wrong door counts a mistake in room k and teleports the agent back to the entry cell of
    room 1, reward 0; a second mistake in the same room (in this episode) ends it (terminated).
- Time limit: `max_steps` (default 1000) truncates the episode.
- The agent's own cell carries the word `room_k` (k its current room), so the room is visible.
- The best return, every door right the first time, is 0.1 (1 + ... + (n_rooms - 1)): 122.5 for 50.
- `active_rooms` (default `n_rooms`) puts only rooms 1..active_rooms in play: reaching room
  `active_rooms` is the success. It is the knob of a rooms curriculum (the batched twin changes it
  between episodes); the rooms beyond it exist but are never entered.

Layout (`reset(options={"layout": ...})`): `correct`, int64 (n_rooms - 1,): 0 if the north (red)
door of room k is the correct one, 1 if the south (blue) one, for rooms 1..n_rooms-1; `rooms`, int64
(): the rooms in play this episode (`active_rooms` when drawn).
"""

import numpy as np
from gymnasium import spaces
from minigrid.core.world_object import Door

from envs.base import WordGridEnv, filled_grid
from envs.checks import check_int

ROOM_SIZE = 5
ROOMS_PER_ROW = 10
ENTRY = ROOM_SIZE // 2  # the entry cell and the doors sit in the middle of the room
DOOR_COLOURS = ("red", "blue")  # north door, south door


def room_origin(room: int) -> tuple[int, int]:
    """Grid (x, y) of the north-west corner wall of room `room` (0-based); rooms share east-west walls."""
    return (ROOM_SIZE + 1) * (room % ROOMS_PER_ROW), (ROOM_SIZE + 2) * (room // ROOMS_PER_ROW)


class PortalEnv(WordGridEnv):
    """The multi-room Portal task; rules in the module docstring."""

    def __init__(
        self,
        n_rooms: int = 50,
        max_steps: int = 1000,
        active_rooms: int | None = None,
        render_mode: str | None = None,
    ):
        self.n_rooms = check_int("n_rooms", n_rooms, 2)
        self.active_rooms = check_int("active_rooms", n_rooms if active_rooms is None else active_rooms, 2, n_rooms)
        self.task_words = tuple(f"room_{k}" for k in range(1, n_rooms + 1))
        columns, rows = min(n_rooms, ROOMS_PER_ROW), -(-n_rooms // ROOMS_PER_ROW)
        super().__init__(
            width=(ROOM_SIZE + 1) * columns + 1,
            height=(ROOM_SIZE + 2) * rows,
            max_steps=max_steps,
            render_mode=render_mode,
        )
        self.layout_space = spaces.Dict(
            {
                "correct": spaces.Box(0, 1, shape=(n_rooms - 1,), dtype=np.int64),
                "rooms": spaces.Box(2, n_rooms, shape=(), dtype=np.int64),
            }
        )
        self.rewards = [0.1 * k for k in range(1, n_rooms)]  # for leaving room k (1-based)
        self.rooms_grid = self._build_rooms()
        self.room = 0  # 0-based
        self.mistakes = np.zeros(n_rooms, dtype=np.int64)

    def _build_rooms(self):
        grid = filled_grid(self.width, self.height)
        for room in range(self.n_rooms):
            x0, y0 = room_origin(room)
            for y in range(y0 + 1, y0 + ROOM_SIZE + 1):
                for x in range(x0 + 1, x0 + ROOM_SIZE + 1):
                    grid.set(x, y, None)
            grid.set(x0 + 1 + ENTRY, y0, Door(DOOR_COLOURS[0]))
            grid.set(x0 + 1 + ENTRY, y0 + ROOM_SIZE + 1, Door(DOOR_COLOURS[1]))
        return grid

    def sample_layout(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {
            "correct": rng.integers(2, size=self.n_rooms - 1, dtype=np.int64),
            "rooms": np.array(self.active_rooms, dtype=np.int64),
        }

    def place_agent_in(self, room: int, x: int = ENTRY, y: int = ENTRY) -> None:
        """Put the agent in `room` (0-based) at floor cell (x, y) of it (0..4, default its entry cell)."""
        x0, y0 = room_origin(room)
        self.room = room
        self.agent_pos = (x0 + 1 + x, y0 + 1 + y)

    def _gen_grid(self, width: int, height: int) -> None:
        self.grid = self.rooms_grid
        self.mistakes[:] = 0
        self.place_agent_in(0)

    def _move_into(self, x: int, y: int) -> tuple[float, bool]:
        obj = self.grid.get(x, y)
        if obj is None or obj.type != "door":
            return super()._move_into(x, y)
        room = self.room
        if DOOR_COLOURS.index(obj.color) == self.layout["correct"][room]:
            self.place_agent_in(room + 1)
            return self.rewards[room], room + 1 == int(self.layout["rooms"]) - 1
        self.mistakes[room] += 1
        self.place_agent_in(0)
        return 0.0, bool(self.mistakes[room] >= 2)

    def agent_cell_words(self) -> tuple[str, ...]:
        return (self.task_words[self.room],)
