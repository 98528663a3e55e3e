"""Draw each gridworld with minigrid's tile renderer (the agent's 3x3 window highlighted) to PNGs.

    python -m runners.render_envs     # docs/images/corridor.png, portal.png, instruction.png

Corridor is drawn with a short corridor (length 12) so it fits a page; Portal with the paper's 50
rooms; Instruction with a fixed layout whose first instruction has just been shown. In each the
agent has taken a few steps from its start.
"""

import argparse
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from envs.corridor import CorridorEnv
from envs.instruction import InstructionEnv
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


# A layout whose first instruction shows at step 6; characters spread over the four rooms.
INSTRUCTION_LAYOUT = {
    "homes": [1, 14, 6, 9, 3, 12, 4, 15],
    "times": [6, 200, 330, 480],
    "targets": [2, 5, 0, 7],
    "senders": [6, 1, 3, 4],
    "wanderer_rooms": [0, 1, 2, 3],
    "wanderer_phases": [3, 9, 14, 6],
    "chatter_offset": 0,
}


def instruction_image(tile_size: int) -> np.ndarray:
    env = InstructionEnv(render_mode="rgb_array")
    env.reset(options={"layout": INSTRUCTION_LAYOUT})
    for _ in range(6):
        env.step(EAST)
    return env.render_rgb(tile_size)


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
