"""Does a MiniGrid Memory policy use the cue? Greedy held-out episodes, tabulated by start cell and cue object.

    python scripts/minigrid_memory_probe.py runs/<MiniGrid-MemoryS7-v0 run>/checkpoint.pt --episodes 256

In minigrid's Memory the cue (a key or a ball) sits at x = 1 beside the start row, and the agent starts facing
east on x = 1 .. hallway end: only a start at x = 1 shows the cue in the first observation. A policy that uses
its memory is right more often at x = 1 than elsewhere; one that takes a fixed side is right about half the
time from every start. Reads the envs' own state (start cell, cue), so it needs minigrid's MemoryEnv.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.acting import act, greedy_actions  # noqa: E402
from agents.checkpoints import load_agent_checkpoint  # noqa: E402
from agents.gym_env import GymVectorEnv  # noqa: E402
from agents.trainer import Trainer  # noqa: E402
from training.distributed import World  # noqa: E402

BATCH = 64  # episodes played at once
SEED = 10_000  # held-out env seeds start here (training envs use the run's seed)


def load_policy(checkpoint: Path) -> tuple[torch.nn.Module, dict]:
    payload = load_agent_checkpoint(checkpoint)
    config = payload["config"]
    config["train"]["num_envs"] = config["ppo"]["minibatches"]  # the policy's shape does not depend on it
    trainer = Trainer(payload["env_name"], payload["model_name"], config, World(0, 1, torch.device("cpu")), 0)
    trainer.policy.load_state_dict(payload["policy"])
    return trainer.policy.eval(), payload


@torch.no_grad()
def play_block(policy: torch.nn.Module, env: GymVectorEnv, seed: int) -> list[tuple[int, str, str]]:
    """(start x, cue object, outcome) of one greedy episode in each of the batch's envs."""
    obs, _ = env.reset(seed=seed)
    rooms = [inner.unwrapped for inner in env.env.unwrapped.envs]
    starts = [int(room.agent_pos[0]) for room in rooms]
    cues = [type(room.grid.get(1, room.height // 2 - 1)).__name__.lower() for room in rooms]
    state = policy.initial_state(env.num_envs, "cpu")
    first = torch.ones(env.num_envs, dtype=torch.bool)
    outcome = ["time-out"] * env.num_envs
    ended = torch.zeros(env.num_envs, dtype=torch.bool)
    while not ended.all():
        logits, _, state, _ = act(policy, obs, state, first)
        obs, reward, terminated, truncated, _ = env.step(greedy_actions(logits))
        first = torch.zeros_like(first)
        for i in torch.nonzero(terminated & ~ended).flatten().tolist():
            outcome[i] = "right" if reward[i] > 0 else "wrong"
        ended |= terminated | truncated
    return list(zip(starts, cues, outcome, strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path, help="a train_agent.py checkpoint of a MiniGrid Memory run")
    parser.add_argument("--episodes", type=int, default=256, help=f"held-out episodes, a multiple of {BATCH}")
    args = parser.parse_args(argv)
    if args.episodes < BATCH or args.episodes % BATCH:
        parser.error(f"--episodes must be a positive multiple of {BATCH}, got {args.episodes}")
    policy, payload = load_policy(args.checkpoint)
    if "Memory" not in payload["env_name"]:
        parser.error(f"{args.checkpoint} is a {payload['env_name']} run, not minigrid's Memory")
    gym = {**payload["config"]["gym"], "vectorization": "sync"}
    env = GymVectorEnv(payload["env_name"], BATCH, "cpu", gym, **payload["config"]["env"])
    table: Counter = Counter()
    for block in range(args.episodes // BATCH):
        table.update(play_block(policy, env, SEED + block * BATCH))
    print("| start x | cue | right | wrong | time-out | right share |\n| ---: | --- | ---: | ---: | ---: | ---: |")
    for start, cue in sorted({(start, cue) for start, cue, _ in table}):
        counts = [table[(start, cue, outcome)] for outcome in ("right", "wrong", "time-out")]
        print(f"| {start} | {cue} | {' | '.join(map(str, counts))} | {counts[0] / sum(counts):.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
