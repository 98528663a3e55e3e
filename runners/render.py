"""Play a trained policy and write an animation of the grid beside a strip of what its memory keeps.

    python runners/render.py --checkpoint runs/<run>/checkpoint.pt --episodes 2 --out rollout.gif

The episodes use held-out seeds (not seen in training) and the reference env, whose rules the
batched twin used in training reproduces exactly. The strip is explained in agents/rollout_video.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agents.checkpoints import load_policy_weights
from agents.envs import make_reference_env
from agents.rollout_video import check_animation_path, play_episodes, write_animation
from agents.spaces import without_text
from agents.trainer import EVAL_SEED_OFFSET, policy_for_env
from runners.train_agent import load_run_checkpoint
from training.paths import check_writable_file


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="render.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint written by train_agent.py")
    parser.add_argument("--episodes", type=int, default=1, help="episodes to play (default 1)")
    parser.add_argument(
        "--out", type=Path, default=Path("rollout.gif"), help="FILE.gif or FILE.mp4 (default rollout.gif)"
    )
    parser.add_argument("--seed", type=int, default=0, help="which held-out episodes to play (default 0)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be at least 1, got {args.episodes}")
    try:
        check_animation_path(args.out)
        check_writable_file(args.out, "--out")
        payload = load_run_checkpoint(args.checkpoint)
        config, env_name = payload["config"], payload["env_name"]
        spaces_env = make_reference_env(env_name, **config["env"])
        observation_space = without_text(spaces_env.observation_space)
        policy = policy_for_env(env_name, observation_space, spaces_env.action_space, payload["model_name"], config)
        load_policy_weights(policy, payload, args.checkpoint)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    frames = play_episodes(policy, env_name, config["env"], args.episodes, EVAL_SEED_OFFSET + args.seed)
    write_animation(frames, args.out)
    print(f"wrote {len(frames)} frames to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
