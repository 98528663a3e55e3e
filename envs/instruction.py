"""Instruction (a gridworld version of the Expire-Span paper's LIGHT instruction task, section 5.2):
remember a few instructions for tens to hundreds of steps through a stream of distractors, then
carry each of them out, once.

Rules:
- `n_rooms` rooms (default 4), each a 5x5 floor walled in, in one row from west to east; neighbouring
  rooms share a wall with a doorway (an open cell) in its middle. The agent starts each episode at the
  centre of the first (westmost) room, or with `random_start` (default False) on a floor cell drawn
  uniformly per episode (any room's, doorways included).
- Characters: `n_characters` (default 8) of butler, guard, cook, merchant, knight, wizard, priest,
  farmer (in that order), each standing in a niche of a room's north or south wall. Every room has 4
  niche slots: the 2nd and 4th cells of its north wall and of its south wall (slot 4 r + j of room r:
  j = 0, 1 north, j = 2, 3 south, west first), so each floor cell touches at most one niche.
  `random_homes` (default True) draws where the characters stand per episode, uniformly among
  `PLACEMENTS` (16384) random placements in distinct slots, a fixed table drawn once from a fixed
  seed (cheap to draw for many envs at once). With `random_homes=False` every episode uses the same
  map, `fixed_homes()`: character c in room c mod n_rooms, the rooms filled in the slot order
  north-west, south-east, north-east, south-west; the map can then live in an agent's weights, as
  the LIGHT text names the location, and the difficulty is memory, not search. A character's niche
  reads as its name (e.g. `butler`); while the character is away, it reads as a wall. Niches block
  moves.
- Actions: 0 north, 1 east, 2 south, 3 west (moving into a wall or a niche leaves the agent in
  place), then one speech action per character, `4 + s` = `say_<s>`: "tell the character next to me
  that character s wants to see them".
- Instructions: `n_instructions` (default 4, at most n_characters) per episode. Instruction k is drawn
  with a time t_k, a target and a sender (a character other than the target, uniform); the targets
  of an episode are distinct (a repeated target would silently lengthen the first one's delay), a
  uniform row of `target_table`, every ordered choice of n_instructions characters. The
  schedule spreads them: with S = (max_steps - delay) // (n_instructions + 1), t_k = k S + U{0..S-1}.
  The observation at step count t_k (the reset obs when t_k = 0) shows on the agent's own cell, for
  that one step only, the words `tell`, `to_<target>` and `from_<sender>`: the roles have words of
  their own, so the target and the sender can never be confused.
- Distance: the target leaves at t_k and stays away (its niche a wall) while t_k <= t < t_k + delay
  (t the step count of the observation), then comes back: its instruction is then *ready*. So an
  instruction can be carried out no sooner than `delay` (default 300) steps after it was shown; the
  schedule leaves at least S steps after the last return.
- Returns announced (`announce_returns`, default False): at step count t_k + delay the agent's cell
  shows `back_<target>` for that one step, wherever the agent is ("the butler is back"), so the
  walk to a returning target starts from what is seen; the sender still has to be remembered.
- Speech: a speech action `say_<s>` taken on the observation of step count t is heard by the present
  character c in a niche next to the agent (4-neighbour), if any. Each instruction gets one attempt:
  - nobody there (no niche next to the agent, an empty niche, or the character away): nothing
    happens (reward 0, not wrong), so speech far from the characters costs nothing;
  - c's instruction is ready and s is its sender: reward +1, the instruction is carried out;
  - c's instruction is ready and s is another sender: reward -`wrong_penalty` (default 0.1) and the
    instruction has failed (it is resolved: no second try);
  - c has nothing ready (c is no target, its instruction is not shown yet, or already resolved):
    reward -`wrong_penalty`.
  Every penalised speech action is wrong; with `wrong_penalty` 0 speech is free and nothing is
  wrong. Several instructions may be pending at once.
- Replies (`replies`, default False): a heard speech action is answered on the agent's cell in the
  next observation, for that one step: `thanks` when it carried out an instruction, `no` otherwise
  (a failed instruction, or nothing ready). Speech nobody hears gets no reply.
- Walk bonus (`walk_bonus` b, default 0: off): a potential-based shaping reward (Ng et al. 1999),
  the potential -b x the shortest walk (moves, through the doorways) from the agent to the front cell
  of the nearest ready instruction's target (0 while nothing is ready): every step adds
  b x (that walk before the step - after it), so a move towards a ready target earns +b, a move away
  -b, and its sum over an episode is b x (the walk when the targets become ready - the walk left at
  the end). It says when and where, never the sender, so the guessing bound below holds.
- Distractors: `n_wanderers` (default 4) cats walk around the floor border (16 cells) of their
  room, clockwise, one cell per step, from a per-episode room and phase; the agent walks over them
  (both words show on its cell). Chatter: at some steps the agent's cell shows a character's name
  (the speaker, a plain name, never a `to_`/`from_` word) and a topic word (hello, gold, dragon,
  bread, rain, song, war, rumour). Chatter follows a fixed table of `CHATTER_PERIOD` entries, drawn
  once from a fixed seed, read from a per-episode offset (step count t shows entry (offset + t) mod
  `CHATTER_PERIOD`); entry e speaks when its fixed uniform draw u_e < `chatter_prob` (default 0.5).
- Episode end: once every instruction is resolved (carried out or failed) the episode terminates;
  the time limit `max_steps` (default 1000) truncates it. A success is an episode that ends with
  every instruction carried out and no wrong speech action.
- `info` at every step (and reset) counts, in the episode so far: `instructions_received` (shown up
  to and including this observation), `instructions_right` (carried out), `instructions_failed`
  (a wrong sender said to a ready target), `instructions_wrong` (penalised speech actions,
  failed instructions included) and `instructions_repeated` (those of them said to a character
  whose instruction was already resolved); the instruction accuracy is right / (right + failed).

Why these rules (the design aims at a task a memory agent learns and a memoryless one cannot):
- The sender is shown once, `delay` steps before it can be used, and is drawn uniformly among the
  n_characters - 1 others, independently of everything an agent can see at the time of use. An
  agent that does not remember it can only guess, so even knowing everything else (where, when,
  who) it succeeds with probability (n_characters - 1) ** -n_instructions (3.7% for 4 characters
  and 3 instructions; 1.6% for 5 and 3; 0.04% for 8 and 4). The shipped presets keep that bound
  under 5%; `envs.instruction_scripted` measures it.
- One attempt per instruction: guessing senders until one works is no strategy, and the episode
  ends once all are resolved, so a wrong guess costs the rest of the reward.
- Silent speech where nobody listens: a random policy speaks most of the time (n_characters of its
  4 + n_characters actions), and penalising all of it made silence the best thing to learn first
  (about 430 penalties per reward on the former quick preset). Now only speech to a character costs.
- Speech to a character with nothing ready is penalised: otherwise speaking every sender to every
  character would be free.
- Fixed homes separate memory from exploration; random homes add search (and a map to remember).
- The walk bonus is a teacher for the walk, not for memory: with fixed homes PPO learns the walk to
  each character separately, and one that stops walking to some character never sees that
  instruction's reward again (BENCHMARKS.md). The bonus rewards each step towards a ready target
  whether or not the instruction is then carried out. Being a difference of potentials it changes
  which policy is best only through the discount; success never counts it.
- Random start cells are exploring starts: with fixed homes a policy learns the walk to each
  character separately, and one that has stopped walking to some character gets no reward to
  learn that walk from; starting anywhere puts the agent next to every niche in some episodes.
- Replies make the agent's own speech observable. The policy sees observations only, not its
  actions or rewards, and speech changes nothing else in view: without a reply, an agent that has
  just carried out an instruction stands before the same character and cannot tell that it spoke.
  Over half the penalised speech of a trained Expire-Span policy without replies went to characters
  already served (`instructions_repeated`; quick preset, seed 2, greedy, 400 episodes: 0.11 of 0.19
  per episode). A reply comes after the one attempt, so it says nothing about a sender that could
  still be used: the guessing bound holds. Measured, it did not stop the repeats (a repeat costs the
  return only the penalty) and the presets leave it off (BENCHMARKS.md).
- Announced returns take the walk out of the memory problem: without them the target's name is
  seen once, `delay` steps before the walk to it; with them the walk is a reaction to what is seen,
  and memory is needed for the sender alone, which no announcement names (the guessing bound above
  is unchanged). Measured on the quick preset it neither sped learning up nor freed a seed that
  stopped visiting some characters (BENCHMARKS.md), so the shipped presets leave it off.
- Agent side (not in this module): a policy that starts with uniform logits speaks n_characters /
  (4 + n_characters) of the time; a negative initial bias on the speech logits (speech rare at
  init) lets it walk to the characters before it learns whom to tell what.
- Free speech is no mistake (`wrong_penalty` 0): a first curriculum stage without penalty can then be
  won, and promoted on success, by an agent that carries out every instruction while it still
  speaks at random elsewhere; the penalised stages after it teach it to hold its tongue. (Counting
  free speech as wrong made that stage unwinnable: the agent learned to carry out instructions and
  stayed in it.)
- Curriculum: `delay`, `wrong_penalty` and `chatter_prob` live in each episode's layout, so the
  batched twin can change them for new episodes only (`set_task`) while running ones keep theirs.
- A known limit of a gridworld: the agent's position is a memory too. An agent with a memory long
  enough to walk to the target's niche (not `delay` long) could park in one of the three cells that
  see the niche, chosen by the sender, and read the sender back from where it stands when the
  target returns; three cells cover 3 of the n_characters - 1 senders. No rule here prevents it.

Layout (`reset(options={"layout": ...})`), numpy arrays: `homes` (n_characters,) the niche slot of
each character; `times`, `targets`, `senders` (n_instructions,) the schedule (drawn times and
targets are distinct, which the rules and the batched twin rely on); `start` (2,) the agent's
first cell (x, y), a floor cell; `wanderer_rooms`,
`wanderer_phases` (n_wanderers,) where each cat walks (phase: its border cell at step 0, 0 the
room's north-west floor cell, clockwise); `chatter_offset` (scalar); and the episode's task
parameters `delay` (int64 scalar), `wrong_penalty` and `chatter_prob` (float64 scalars).
"""

import collections
import functools
import itertools
import numbers
from typing import Any, SupportsFloat

import numpy as np
from gymnasium import spaces
from minigrid.core.constants import COLOR_NAMES, COLOR_TO_IDX, COLORS, OBJECT_TO_IDX
from minigrid.core.grid import Grid
from minigrid.core.world_object import Ball, Key, Wall, WorldObj
from minigrid.utils.rendering import fill_coords, point_in_circle, point_in_rect, point_in_triangle

from envs.base import MOVES, WordGridEnv, filled_grid
from envs.checks import check_int

CHARACTERS = ("butler", "guard", "cook", "merchant", "knight", "wizard", "priest", "farmer")
TOPICS = ("hello", "gold", "dragon", "bread", "rain", "song", "war", "rumour")
REPLIES = ("thanks", "no")  # a heard speech action that carried out an instruction, and one that did not
ROOM_SIZE = 5
ROOM_PITCH = ROOM_SIZE + 1  # rooms share their east-west walls
GRID_HEIGHT = ROOM_SIZE + 2
DOORWAY_Y = GRID_HEIGHT // 2
NICHE_DX = (2, 4)  # niche x offsets from a room's west wall: the 2nd and 4th cells of its wall
NICHE_Y = (0, GRID_HEIGHT - 1)  # north wall, south wall
SLOTS_PER_ROOM = len(NICHE_DX) * len(NICHE_Y)
FIXED_SLOT_ORDER = (0, 3, 1, 2)  # fixed homes fill a room north-west, south-east, north-east, south-west
START = (ROOM_PITCH // 2, DOORWAY_Y)  # centre of the first room
CHATTER_PERIOD = 1024
PLACEMENTS = 16384
TABLE_SEED = 0  # the fixed chatter and placement tables are drawn from it
NORTH, EAST, SOUTH, WEST = range(len(MOVES))


def niche_cell(slot: int) -> tuple[int, int]:
    """Grid (x, y) of niche slot `slot`: room slot // 4, north wall for slot % 4 < 2, west one first."""
    room, j = divmod(slot, SLOTS_PER_ROOM)
    return room * ROOM_PITCH + NICHE_DX[j % 2], NICHE_Y[j // 2]


def front_cell(slot: int) -> tuple[int, int]:
    """The floor cell in front of niche slot `slot`, where the agent stands to speak to it."""
    x, y = niche_cell(slot)
    return x, 1 if y == 0 else GRID_HEIGHT - 2


def border_cells(room: int) -> list[tuple[int, int]]:
    """The 16 floor cells along the walls of `room`, clockwise from its north-west floor cell."""
    x0, y0 = room * ROOM_PITCH + 1, 1
    last = ROOM_SIZE - 1
    north = [(x0 + i, y0) for i in range(ROOM_SIZE)]
    east = [(x0 + last, y0 + i) for i in range(1, ROOM_SIZE)]
    south = [(x0 + i, y0 + last) for i in range(last - 1, -1, -1)]
    west = [(x0, y0 + i) for i in range(last - 1, 0, -1)]
    return north + east + south + west


@functools.cache
def placement_table(n_slots: int, n_characters: int) -> np.ndarray:
    """PLACEMENTS x n_characters: fixed random placements of the characters in distinct niche slots."""
    rng = np.random.default_rng(TABLE_SEED)
    return rng.random((PLACEMENTS, n_slots)).argsort(1)[:, :n_characters]


@functools.cache
def target_table(n_characters: int, n_instructions: int) -> np.ndarray:
    """Every ordered choice of n_instructions distinct targets, one per row (at most 8! = 40320 rows):
    a uniform row is a uniform draw of distinct targets, as cheap for many envs as one index."""
    return np.array(list(itertools.permutations(range(n_characters), n_instructions)))


def fixed_homes(n_rooms: int, n_characters: int) -> np.ndarray:
    """(n_characters,) the map of `random_homes=False`: character c in room c % n_rooms, spread over
    the rooms first and then over each room's walls (FIXED_SLOT_ORDER)."""
    return np.array([SLOTS_PER_ROOM * (c % n_rooms) + FIXED_SLOT_ORDER[c // n_rooms] for c in range(n_characters)])


def chatter_table(n_characters: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fixed chatter, per entry of CHATTER_PERIOD: a uniform draw u (the entry speaks when u <
    chatter_prob), the speaker and the topic."""
    rng = np.random.default_rng(TABLE_SEED)
    draw = rng.random(CHATTER_PERIOD)
    speaker = rng.integers(n_characters, size=CHATTER_PERIOD)
    return draw, speaker, rng.integers(len(TOPICS), size=CHATTER_PERIOD)


def walk_lengths(grid: Grid, goals: list[tuple[int, int]]) -> np.ndarray:
    """len(goals) x H x W: the fewest moves from each floor cell of `grid` to each goal cell (a
    breadth-first search over the empty cells); -1 where a goal cannot be reached (walls)."""
    lengths = np.full((len(goals), grid.height, grid.width), -1, dtype=np.int64)
    for g, goal in enumerate(goals):
        lengths[g, goal[1], goal[0]] = 0
        frontier = collections.deque([goal])
        while frontier:
            x, y = frontier.popleft()
            for dx, dy in MOVES:
                nx, ny = x + dx, y + dy
                inside = 0 <= nx < grid.width and 0 <= ny < grid.height
                if inside and grid.get(nx, ny) is None and lengths[g, ny, nx] < 0:
                    lengths[g, ny, nx] = lengths[g, y, x] + 1
                    frontier.append((nx, ny))
    return lengths


def check_number(name: str, value: object, low: float, high: float | None = None) -> float:
    """`value` as a float in [low, high] (high None: no upper bound), else a ValueError naming `name`."""
    allowed = f"[{low}, {high}]" if high is not None else f"[{low}, inf)"
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not is_number or not low <= value <= (high if high is not None else np.inf):
        raise ValueError(f"{name} must be a number in {allowed}, got {value!r}")
    return float(value)


# 5x5 capitals drawn on the character tiles, so that characters of the same colour can be told apart
GLYPHS = {
    "B": ("1111.", "1...1", "1111.", "1...1", "1111."),
    "G": (".111.", "1....", "1.111", "1...1", ".111."),
    "C": (".1111", "1....", "1....", "1....", ".1111"),
    "M": ("1...1", "11.11", "1.1.1", "1...1", "1...1"),
    "K": ("1...1", "1..1.", "111..", "1..1.", "1...1"),
    "W": ("1...1", "1...1", "1.1.1", "11.11", "1...1"),
    "P": ("1111.", "1...1", "1111.", "1....", "1...."),
    "F": ("11111", "1....", "1111.", "1....", "1...."),
}
CHARACTER_COLOURS = tuple(name for name in COLOR_NAMES if name != "grey")  # grey is the walls' colour
CAT_COLOUR = (255, 150, 40)  # ginger: no character has it


def draw_glyph(img: np.ndarray, letter: str, colour: tuple[int, int, int]) -> None:
    """Draw `letter` (a key of GLYPHS) in the middle of a tile image."""
    low, cell = 0.3, 0.08
    for row, line in enumerate(GLYPHS[letter]):
        for col, bit in enumerate(line):
            if bit == "1":
                x, y = low + col * cell, low + row * cell
                fill_coords(img, point_in_rect(x, x + cell, y, y + cell), colour)


class Character(Ball):
    """A character in its niche: drawn as a ball of its own colour with its initial, described by its name."""

    def __init__(self, index: int):
        super().__init__(CHARACTER_COLOURS[index % len(CHARACTER_COLOURS)])
        self.index = index
        self.words = (CHARACTERS[index],)
        self.ansi = CHARACTERS[index][0].upper()

    def encode(self) -> tuple[int, int, int]:
        return OBJECT_TO_IDX["ball"], COLOR_TO_IDX[self.color], 1 + self.index  # unique: the tile cache key

    def render(self, img: np.ndarray) -> None:
        fill_coords(img, point_in_circle(0.5, 0.5, 0.4), COLORS[self.color])
        draw_glyph(img, self.ansi, (0, 0, 0))


class AwayNiche(Wall):
    """The niche of a character who is away: reads as a plain wall, drawn as a wall with the
    character's initial in a ring of its colour, so that a picture shows who has left."""

    def __init__(self, index: int):
        super().__init__()
        self.index = index
        self.character_colour = COLORS[CHARACTER_COLOURS[index % len(CHARACTER_COLOURS)]]
        self.ansi = "#"

    def encode(self) -> tuple[int, int, int]:
        return OBJECT_TO_IDX["wall"], COLOR_TO_IDX[self.color], 1 + self.index

    def render(self, img: np.ndarray) -> None:
        super().render(img)
        fill_coords(img, point_in_circle(0.5, 0.5, 0.42), self.character_colour)
        fill_coords(img, point_in_circle(0.5, 0.5, 0.36), COLORS[self.color])
        draw_glyph(img, CHARACTERS[self.index][0].upper(), self.character_colour)


class Wanderer(Key):
    """A cat walking the border of its room; the agent walks over it. Drawn as a ginger cat's head."""

    words = ("cat",)
    ansi = "c"

    def __init__(self):
        super().__init__("yellow")

    def can_overlap(self) -> bool:
        return True

    def render(self, img: np.ndarray) -> None:
        fill_coords(img, point_in_triangle((0.22, 0.5), (0.3, 0.14), (0.48, 0.36)), CAT_COLOUR)  # ears
        fill_coords(img, point_in_triangle((0.78, 0.5), (0.7, 0.14), (0.52, 0.36)), CAT_COLOUR)
        fill_coords(img, point_in_circle(0.5, 0.58, 0.28), CAT_COLOUR)
        for eye_x in (0.4, 0.6):
            fill_coords(img, point_in_circle(eye_x, 0.52, 0.05), (0, 0, 0))


class InstructionEnv(WordGridEnv):
    """The Instruction task; rules in the module docstring."""

    def __init__(
        self,
        n_rooms: int = 4,
        n_characters: int = 8,
        n_instructions: int = 4,
        delay: int = 300,
        wrong_penalty: float = 0.1,
        n_wanderers: int = 4,
        chatter_prob: float = 0.5,
        random_homes: bool = True,
        announce_returns: bool = False,
        replies: bool = False,
        random_start: bool = False,
        walk_bonus: float = 0.0,
        max_steps: int = 1000,
        render_mode: str | None = None,
    ):
        self.n_rooms = check_int("n_rooms", n_rooms, 1)
        self.n_characters = check_int("n_characters", n_characters, 2, min(len(CHARACTERS), SLOTS_PER_ROOM * n_rooms))
        self.n_instructions = check_int("n_instructions", n_instructions, 1, n_characters)
        check_int("max_steps", max_steps, n_instructions + 2)
        self.max_delay = max_steps - n_instructions - 1  # every instruction keeps a slot of S >= 1 steps
        self.delay = check_int("delay", delay, 1, self.max_delay)
        self.wrong_penalty = check_number("wrong_penalty", wrong_penalty, 0.0)
        self.n_wanderers = check_int("n_wanderers", n_wanderers, 0)
        self.chatter_prob = check_number("chatter_prob", chatter_prob, 0.0, 1.0)
        if not isinstance(random_homes, bool):
            raise ValueError(f"random_homes must be True or False, got {random_homes!r}")
        self.random_homes = random_homes
        if not isinstance(announce_returns, bool):
            raise ValueError(f"announce_returns must be True or False, got {announce_returns!r}")
        self.announce_returns = announce_returns
        if not isinstance(replies, bool):
            raise ValueError(f"replies must be True or False, got {replies!r}")
        self.replies = replies
        if not isinstance(random_start, bool):
            raise ValueError(f"random_start must be True or False, got {random_start!r}")
        self.random_start = random_start
        self.walk_bonus = check_number("walk_bonus", walk_bonus, 0.0)
        self.names = CHARACTERS[:n_characters]
        self.task_words = (
            "cat",
            *self.names,
            "tell",
            *(f"to_{name}" for name in self.names),
            *(f"from_{name}" for name in self.names),
            *TOPICS,
            *((f"back_{name}" for name in self.names) if announce_returns else ()),
            *(REPLIES if replies else ()),
        )
        self.n_actions = len(MOVES) + n_characters
        super().__init__(
            width=ROOM_PITCH * n_rooms + 1, height=GRID_HEIGHT, max_steps=max_steps, render_mode=render_mode
        )
        n_slots = SLOTS_PER_ROOM * n_rooms

        def ints(high: int, *shape: int) -> spaces.Box:
            return spaces.Box(0, high, shape=shape, dtype=np.int64)

        self.layout_space = spaces.Dict(
            {
                "homes": ints(n_slots - 1, n_characters),
                "start": spaces.Box(np.array([1, 1]), np.array([self.width - 2, GRID_HEIGHT - 2]), dtype=np.int64),
                "times": ints(max_steps - 2, n_instructions),
                "targets": ints(n_characters - 1, n_instructions),
                "senders": ints(n_characters - 1, n_instructions),
                "wanderer_rooms": ints(n_rooms - 1, n_wanderers),
                "wanderer_phases": ints(len(border_cells(0)) - 1, n_wanderers),
                "chatter_offset": ints(CHATTER_PERIOD - 1),
                "delay": spaces.Box(1, self.max_delay, shape=(), dtype=np.int64),
                "wrong_penalty": spaces.Box(0.0, np.inf, shape=(), dtype=np.float64),
                "chatter_prob": spaces.Box(0.0, 1.0, shape=(), dtype=np.float64),
            }
        )
        self.chatter_draw, self.chatter_speaker, self.chatter_topic = chatter_table(n_characters)
        self.placements = placement_table(n_slots, n_characters)
        self.targets = target_table(n_characters, n_instructions)
        self.fixed_homes = fixed_homes(n_rooms, n_characters)
        self.characters = [Character(c) for c in range(n_characters)]
        self.away_niches = [AwayNiche(c) for c in range(n_characters)]
        self.wanderers = [Wanderer() for _ in range(n_wanderers)]
        self.borders = [border_cells(room) for room in range(n_rooms)]
        grid = self.static_grid()
        self.floor_cells = np.array(
            [(x, y) for x in range(self.width) for y in range(self.height) if grid.get(x, y) is None]
        )  # F x 2: where a random start may fall
        self.walks_to_slot = walk_lengths(grid, [front_cell(slot) for slot in range(n_slots)])  # n_slots x H x W
        # the episode, from its layout (see _gen_grid)
        self.schedule: list[tuple[int, int, int]] = []  # per instruction: (time, target, sender)
        self.instruction_of: dict[int, int] = {}  # target -> its instruction (targets are distinct)
        self.niches: list[tuple[int, int]] = []  # per character: its niche cell
        self.walks: list[tuple[list[tuple[int, int]], int]] = []  # per cat: (its room's border, phase)
        self.chatter_offset = 0
        self.episode_delay, self.episode_penalty, self.episode_chatter_prob = delay, self.wrong_penalty, 0.0
        self.right: list[bool] = []  # per instruction: carried out
        self.failed: list[bool] = []  # per instruction: a wrong sender was said
        self.wrong = 0
        self.repeated = 0
        self.reply: str | None = None  # shown on the agent's cell in the observation after a heard speech

    def spacing(self, delay: int) -> int:
        """S, the length of each instruction's slot in the schedule under `delay`."""
        return (self.max_steps - delay) // (self.n_instructions + 1)

    # ----- episode ------------------------------------------------------------------------------------

    def sample_layout(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        k, c, w, spacing = self.n_instructions, self.n_characters, self.n_wanderers, self.spacing(self.delay)
        targets = self.targets[rng.integers(len(self.targets))]
        homes = self.placements[rng.integers(PLACEMENTS)] if self.random_homes else self.fixed_homes
        return {
            "homes": homes,
            "start": self.floor_cells[rng.integers(len(self.floor_cells))] if self.random_start else np.array(START),
            "times": np.arange(k) * spacing + rng.integers(spacing, size=k),
            "targets": targets,
            "senders": (targets + 1 + rng.integers(c - 1, size=k)) % c,
            "wanderer_rooms": rng.integers(self.n_rooms, size=w),
            "wanderer_phases": rng.integers(len(self.borders[0]), size=w),
            "chatter_offset": np.array(rng.integers(CHATTER_PERIOD)),
            "delay": np.array(self.delay),
            "wrong_penalty": np.array(self.wrong_penalty),
            "chatter_prob": np.array(self.chatter_prob),
        }

    def check_layout(self, layout: dict[str, Any]) -> dict[str, np.ndarray]:
        """`layout` in the dtypes of `layout_space`, with distinct homes, times and targets and no
        instruction from its own target, else a ValueError saying what is wrong."""
        arrays = super().check_layout(layout)
        for key in ("homes", "times", "targets"):
            if len(set(arrays[key].tolist())) < len(arrays[key]):
                raise ValueError(f"layout[{key!r}] = {arrays[key]!r} must hold distinct values")
        if np.any(arrays["targets"] == arrays["senders"]):
            raise ValueError(f"no instruction may come from its own target, got {arrays['senders']!r}")
        if not (arrays["start"] == self.floor_cells).all(1).any():
            raise ValueError(f"layout['start'] = {arrays['start']!r} must be a floor cell, not a wall")
        return arrays

    def static_grid(self) -> Grid:
        """The rooms and their doorways, every niche walled up: what never changes."""
        grid = filled_grid(self.width, self.height)
        for room in range(self.n_rooms):
            for y in range(1, ROOM_SIZE + 1):
                for x in range(room * ROOM_PITCH + 1, (room + 1) * ROOM_PITCH):
                    grid.set(x, y, None)
            if room > 0:
                grid.set(room * ROOM_PITCH, DOORWAY_Y, None)
        return grid

    def _gen_grid(self, width: int, height: int) -> None:
        layout = self.layout
        self.schedule = list(zip(*(layout[key].tolist() for key in ("times", "targets", "senders")), strict=True))
        self.instruction_of = {target: k for k, (_, target, _) in enumerate(self.schedule)}
        self.niches = [niche_cell(slot) for slot in layout["homes"].tolist()]  # per character
        self.walks = [
            (self.borders[room], phase)
            for room, phase in zip(layout["wanderer_rooms"].tolist(), layout["wanderer_phases"].tolist(), strict=True)
        ]
        self.chatter_offset = int(layout["chatter_offset"])
        self.episode_delay = int(layout["delay"])
        self.episode_penalty = float(layout["wrong_penalty"])
        self.episode_chatter_prob = float(layout["chatter_prob"])
        self.grid = self.static_grid()
        self.agent_pos = tuple(layout["start"].tolist())
        self.right = [False] * self.n_instructions
        self.failed = [False] * self.n_instructions
        self.wrong = 0
        self.repeated = 0
        self.reply: str | None = None
        for wanderer in self.wanderers:
            wanderer.cur_pos = None  # the grid is new: nothing to clear
        self._place_objects(0)

    def present(self, t: int) -> list[bool]:
        """Per character: does it stand in its niche at step count t?"""
        away = {target for time, target, _ in self.schedule if time <= t < time + self.episode_delay}
        return [c not in away for c in range(self.n_characters)]

    def ready(self, t: int) -> list[bool]:
        """Per instruction: shown, its target back (t the step count of an observation) and not resolved."""
        return [
            time + self.episode_delay <= t and not (right or failed)
            for (time, _, _), right, failed in zip(self.schedule, self.right, self.failed, strict=True)
        ]

    def _place_objects(self, t: int) -> None:
        """Put the characters and cats where they are at step count t."""
        for c, (niche, here) in enumerate(zip(self.niches, self.present(t), strict=True)):
            self.grid.set(*niche, self.characters[c] if here else self.away_niches[c])
        for wanderer in self.wanderers:
            if wanderer.cur_pos is not None:
                self.grid.set(*wanderer.cur_pos, None)
        for wanderer, (border, phase) in zip(self.wanderers, self.walks, strict=True):
            wanderer.cur_pos = border[(phase + t) % len(border)]
            self.grid.set(*wanderer.cur_pos, wanderer)

    # ----- acting --------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, _ = super().reset(seed=seed, options=options)
        return obs, self.counters()

    def step(self, action: int) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, _ = super().step(action)
        return obs, reward, terminated, truncated, self.counters()

    def _act(self, action: int) -> tuple[float, bool]:
        t = self.step_count - 1  # the step count of the observation the agent acted on
        walk_before = self.walk_to_ready(t) if self.walk_bonus else 0
        self.reply = None
        reward = self._speak(action - len(MOVES), t) if action >= len(MOVES) else super()._act(action)[0]
        self._place_objects(self.step_count)
        if self.walk_bonus:
            reward += self.walk_bonus * (walk_before - self.walk_to_ready(self.step_count))
        return reward, all(right or failed for right, failed in zip(self.right, self.failed, strict=True))

    def _speak(self, sender: int, t: int) -> float:
        """Say "`sender` wants to see you" to the character next to the agent; the reward."""
        listener = self.adjacent_character()
        if listener is None:
            return 0.0
        k = self.instruction_of.get(listener)
        self.reply = REPLIES[1] if self.replies else None
        served = k is not None and (self.right[k] or self.failed[k])
        if k is not None and self.ready(t)[k]:
            if self.schedule[k][2] == sender:
                self.right[k] = True
                self.reply = REPLIES[0] if self.replies else None
                return 1.0
            self.failed[k] = True
        self.wrong += self.episode_penalty > 0  # free speech is no mistake
        self.repeated += served and self.episode_penalty > 0
        return -self.episode_penalty

    def walk_to_ready(self, t: int) -> int:
        """The fewest moves from the agent to the front cell of a ready instruction's target at step
        count t; 0 when nothing is ready (the walk bonus's potential, over -walk_bonus)."""
        x, y = self.agent_pos
        homes = self.layout["homes"]
        walks = [
            int(self.walks_to_slot[homes[target], y, x])
            for (_, target, _), ready in zip(self.schedule, self.ready(t), strict=True)
            if ready
        ]
        return min(walks, default=0)

    def adjacent_character(self) -> int | None:
        """The index of the character standing next to the agent (4-neighbour), if any."""
        x, y = self.agent_pos
        for dx, dy in MOVES:
            obj = self.cell(x + dx, y + dy)
            if isinstance(obj, Character):
                return obj.index
        return None

    def counters(self) -> dict[str, int]:
        """Instruction accuracy so far in this episode."""
        return {
            "instructions_received": sum(time <= self.step_count for time, _, _ in self.schedule),
            "instructions_right": sum(self.right),
            "instructions_failed": sum(self.failed),
            "instructions_wrong": self.wrong,
            "instructions_repeated": self.repeated,
        }

    # ----- observation and rendering -----------------------------------------------------------------

    def agent_cell_words(self) -> tuple[str, ...]:
        t, words = self.step_count, ()
        for time, target, sender in self.schedule:
            if time == t:
                words += ("tell", f"to_{self.names[target]}", f"from_{self.names[sender]}")
            if self.announce_returns and time + self.episode_delay == t:
                words += (f"back_{self.names[target]}",)
        entry = (self.chatter_offset + t) % CHATTER_PERIOD
        if self.chatter_draw[entry] < self.episode_chatter_prob:
            words += (self.names[self.chatter_speaker[entry]], TOPICS[self.chatter_topic[entry]])
        if self.reply is not None:
            words += (self.reply,)
        return words

    @staticmethod
    def _ansi_char(obj: WorldObj | None) -> str:
        return getattr(obj, "ansi", None) or WordGridEnv._ansi_char(obj)
