"""Training throughput on Corridor: the batched twin (``--env corridor``) against the reference ``Corridor-v0``
through ``gymnasium.make_vec`` (sync, NEXT_STEP autoreset), same config and policy, side by side in one run.

    python -m runners.bench_gym_vs_twin --num-envs 32 --updates 5 --model lstm
"""

from __future__ import annotations

import argparse
import time

import torch

from agents.trainer import Trainer
from runners.train_agent import CONFIG_DIR, DEFAULT_PRESET, preset_path
from training.config import load_toml, resolve
from training.distributed import World


def measure(env: str, config: dict, model: str, updates: int) -> dict[str, float]:
    """Agent steps/s over ``updates`` updates after one warm-up update, and the env's share of the time."""
    trainer = Trainer(env, model, config, World(rank=0, world_size=1, device=torch.device("cpu")), seed=0)
    trainer.update()
    trainer.timing.env = trainer.timing.acting = trainer.timing.learning = 0.0
    start = time.perf_counter()
    for _ in range(updates):
        trainer.update()
    seconds = time.perf_counter() - start
    return {"steps_per_s": updates * trainer.steps_per_update / seconds, "env_share": trainer.timing.env / seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-envs", type=int, default=32)
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--model", default="lstm")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    overrides = [f"train.num_envs={args.num_envs}", f"train.cpu_threads={args.threads}", "train.compile_acting=false"]
    config = resolve(preset_path("corridor"), None, overrides)
    # Corridor-v0 counts success from its return (1 at the right door): the reference env reports no success key
    gym = load_toml(CONFIG_DIR / DEFAULT_PRESET)["gym"]
    config["gym"] = {**gym, "vectorization": "sync", "success_from_return": True, "success_return": 0.5}
    print(f"Corridor quick preset, {args.model}, {args.num_envs} envs x {config['train']['unroll']} steps per update")
    for env in ("corridor", "Corridor-v0"):
        result = measure(env, config, args.model, args.updates)
        kind = "batched twin" if env == "corridor" else "gymnasium.make_vec (sync)"
        print(f"{env:12s} {kind:26s} {result['steps_per_s']:10,.0f} agent steps/s, env {result['env_share']:.0%} of it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
