"""Success of the scripted Instruction agents (envs/instruction_scripted.py) on each shipped preset's
[env] table and each stage of the quick preset's curriculum: perfect memory against the strategies that do not
remember the instructions.

    python -m runners.bench_instruction_scripted                  # 300 episodes per cell
    python -m runners.bench_instruction_scripted --episodes 1000 --seed 1
"""

import argparse
import time

import torch

from envs.instruction_scripted import STRATEGIES, evaluate
from runners import train_agent
from training.config import resolve


def presets() -> dict[str, dict]:
    """Name -> [env] table: the quick preset, the paper-scale config, and the quick preset at each curriculum stage."""
    preset = train_agent.preset_path("instruction")
    config = resolve(preset)
    quick = config["env"]
    tables = {"instruction_quick.toml": quick}
    tables["instruction.toml"] = resolve(preset, train_agent.CONFIG_DIR / "instruction.toml")["env"]
    for k, stage in enumerate(config["curriculum"]["stages"], 1):
        tables[f"quick, stage {k} (delay {stage['delay']}, penalty {stage['wrong_penalty']})"] = {**quick, **stage}
    return tables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=300, help="episodes per preset and strategy (default: 300)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the layouts and of the guesses (default: 0)")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be at least 1")
    torch.set_num_threads(1)  # small tensors: more threads only contend on a shared CPU
    start = time.perf_counter()
    print(f"success over {args.episodes} episodes (mean instructions right / wrong speech actions per episode)")
    print("| preset | " + " | ".join(STRATEGIES) + " |")
    print("| --- |" + " --- |" * len(STRATEGIES))
    for name, env in presets().items():
        cells = []
        for strategy in STRATEGIES:
            result = evaluate(strategy, args.episodes, args.seed, **env)
            cells.append(f"{result['success']:.1%} ({result['right']:.2f} / {result['wrong']:.2f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
