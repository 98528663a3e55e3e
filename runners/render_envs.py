"""Draw each gridworld with minigrid's tile renderer (the agent's 3x3 window highlighted) to PNGs.

    python -m runners.render_envs     # docs/images/corridor.png, portal.png, instruction.png

Corridor is drawn with a short corridor (length 12) so it fits a page; Portal with the paper's 50
rooms; Instruction at paper scale (fixed homes) with a layout whose first instruction has just been
shown, with a caption: what the agent's own cell reads (the instruction and the chatter, which the
grid cannot show) and a key to the characters, their empty niches and the cats. In each the agent
has taken a few steps from its start.
"""

import argparse
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from envs.corridor import CorridorEnv
from envs.instruction import CHARACTERS, InstructionEnv, fixed_homes
from envs.portal import PortalEnv

EAST, SOUTH = 1, 2


def corridor_image(tile_size: int) -> np.ndarray:
    env = CorridorEnv(min_length=12, max_length=12, render_mode="rgb_array")
    env.reset(options={"layout": {"length": 12, "cue": 1, "north_door": 0}})
    for _ in range(3):
        env.step(EAST)
    return env.render_rgb(tile_size)


def portal_image(tile_size: int) -> np.ndarray:
    env = PortalEnv(render_mode="rgb_array")
    env.reset(seed=0)
    for action in (EAST, SOUTH):
        env.step(action)
    return env.render_rgb(tile_size)


# The paper-scale map (fixed homes); the first instruction shows at step 6, with chatter on the same step.
INSTRUCTION_LAYOUT = {
    "homes": fixed_homes(4, 8),
    "start": [3, 3],
    "times": [6, 200, 330, 480],
    "targets": [2, 5, 0, 7],
    "senders": [6, 1, 3, 4],
    "wanderer_rooms": [0, 1, 2, 3],
    "wanderer_phases": [3, 9, 14, 6],
    "chatter_offset": 5,
    "delay": 300,
    "wrong_penalty": 0.1,
    "chatter_prob": 0.5,
}


def caption(width: int, tile_size: int, lines: list[str]) -> np.ndarray:
    """A white strip `width` pixels wide with `lines` of black text, as an (h, width, 3) uint8 image."""
    font = ImageFont.load_default(size=max(8, tile_size // 2))
    line_height = int(font.size * 1.4)
    strip = Image.new("RGB", (width, line_height * len(lines) + tile_size // 2), "white")
    draw = ImageDraw.Draw(strip)
    for k, line in enumerate(lines):
        draw.text((tile_size // 4, tile_size // 4 + k * line_height), line, fill="black", font=font)
    return np.asarray(strip)


def instruction_image(tile_size: int) -> np.ndarray:
    env = InstructionEnv(random_homes=False, render_mode="rgb_array")
    env.reset(options={"layout": INSTRUCTION_LAYOUT})
    for _ in range(6):
        env.step(EAST)
    words = env.agent_cell_words()
    grid = env.render_rgb(tile_size)
    key = ", ".join(f"{name[0].upper()} {name}" for name in CHARACTERS)
    lines = [
        f"agent's cell: {' '.join(words[:3])} (an instruction, shown for this step only)",
        f"    and {' '.join(words[3:])} (chatter: a distractor, like the ginger cats)",
        f"characters by initial: {key}",
        "a ringed initial on the wall: that character is away (its niche reads as a plain wall)",
    ]
    return np.concatenate([grid, caption(grid.shape[1], tile_size, lines)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--out-dir", type=Path, default=Path("docs/images"), help="where to write (default: docs/images)"
    )
    parser.add_argument("--tile-size", type=int, default=32, help="pixels per grid cell (default: 32)")
    args = parser.parse_args()
    if not 4 <= args.tile_size <= 128:
        parser.error("--tile-size must be an integer in [4, 128]")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, image in (
        ("corridor", corridor_image(args.tile_size)),
        ("portal", portal_image(args.tile_size)),
        ("instruction", instruction_image(args.tile_size)),
    ):
        path = args.out_dir / f"{name}.png"
        iio.imwrite(path, image)
        print(f"wrote {path} ({image.shape[1]} x {image.shape[0]} pixels)")


if __name__ == "__main__":
    main()
