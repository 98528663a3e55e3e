"""Corridor (Expire-Span paper, section 5.2 and appendix A.3.1): remember one colour for a long walk.

Rules:
- Each episode draws a corridor length n ~ U(min_length, max_length) (default U(3, 200)), a cue
  colour (red or blue, uniform) and the order of the two doors (uniform).
- The grid is 5 rows by n + 2 columns, walls everywhere but: the corridor, row 2, columns 1..n; the
  cue, a ball of the cue colour at (1, 1), north of the agent's start (1, 2); and at the east end
  (column n) a junction with a door to the north, (n, 1), and one to the south, (n, 3), one red
  and one blue. The grid is built per episode at width n + 2; the batched twin reproduces the same
  observations without storing a grid.
- Actions: 0 north, 1 east, 2 south, 3 west. Moving into a wall or the cue leaves the agent in place.
  Moving into a door ends the episode (terminated): reward 1 if the door's colour is the cue's, else 0.
- Time limit: `max_steps` (default 1000; at least max_length) truncates the episode. The shortest
  episode of a length-n corridor takes n steps (n - 1 east, then the door), so 1000 leaves ample
  time for length 200.
- The cue is visible only from columns 1 and 2 and the doors only from columns n - 1 and n, never
  both at once (n >= 3): an agent without memory wins at most half its episodes.

Layout (`reset(options={"layout": ...})`): `length` (n), `cue` (0 red, 1 blue), `north_door` (the
colour of the north door, 0 red, 1 blue), each an int64 scalar.
"""

import numpy as np
from gymnasium import spaces
from minigrid.core.world_object import Ball, Door

from envs.base import WordGridEnv, filled_grid
from envs.checks import check_int, check_not_above

COLOURS = ("red", "blue")  # layout colour index -> minigrid colour name
CORRIDOR_ROW = 2


class CorridorEnv(WordGridEnv):
    """The Corridor task; rules in the module docstring."""

    def __init__(
        self,
        min_length: int = 3,
        max_length: int = 200,
        max_steps: int = 1000,
        render_mode: str | None = None,
    ):
        self.min_length = check_int("min_length", min_length, 3)
        self.max_length = check_int("max_length", max_length, 3)
        check_not_above("min_length", min_length, "max_length", max_length)
        check_int("max_steps", max_steps, max_length)
        super().__init__(width=max_length + 2, height=5, max_steps=max_steps, render_mode=render_mode)
        scalar = {"shape": (), "dtype": np.int64}
        self.layout_space = spaces.Dict(
            {
                "length": spaces.Box(min_length, max_length, **scalar),
                "cue": spaces.Box(0, 1, **scalar),
                "north_door": spaces.Box(0, 1, **scalar),
            }
        )

    def sample_layout(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {
            "length": np.array(rng.integers(self.min_length, self.max_length + 1), dtype=np.int64),
            "cue": np.array(rng.integers(2), dtype=np.int64),
            "north_door": np.array(rng.integers(2), dtype=np.int64),
        }

    def _gen_grid(self, width: int, height: int) -> None:
        n = int(self.layout["length"])
        north = int(self.layout["north_door"])
        self.width = n + 2
        self.grid = filled_grid(self.width, height)
        for x in range(1, n + 1):
            self.grid.set(x, CORRIDOR_ROW, None)
        self.grid.set(1, CORRIDOR_ROW - 1, Ball(COLOURS[int(self.layout["cue"])]))
        self.grid.set(n, CORRIDOR_ROW - 1, Door(COLOURS[north]))
        self.grid.set(n, CORRIDOR_ROW + 1, Door(COLOURS[1 - north]))
        self.agent_pos = (1, CORRIDOR_ROW)

    def _move_into(self, x: int, y: int) -> tuple[float, bool]:
        obj = self.grid.get(x, y)
        if obj is not None and obj.type == "door":
            return float(obj.color == COLOURS[int(self.layout["cue"])]), True
        return super()._move_into(x, y)
