"""End-to-end agent throughput: acting, env and learning of the training loop, per memory model.

    python -m runners.bench_agent          # quick Corridor preset on CPU: expire_span, transformer_xl, lstm, gru, none
    python -m runners.bench_agent --device cuda --config configs/corridor.toml --num-envs 1024 --bf16
    python -m runners.bench_agent --models expire_span --set train.compile_acting=false

Each model gets its own ``Trainer`` (the object ``runners/train_agent.py`` drives) and the models
take turns, one update each, so that load from other processes on a shared machine hits them alike.
A figure is the median over the timed updates of agent steps per second (envs x unroll / seconds of
one update, the device synchronised before and after). The phase shares come from the trainer's
host clock: on CUDA they say where the host waited, not where the GPU worked.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from tqdm import tqdm

import memory_models
from agents.envs import ENV_IDS
from agents.trainer import Trainer
from runners.bench_models import machine
from runners.train_agent import preset_path
from training.config import ConfigError, resolve
from training.distributed import init_world

PHASES = ("acting", "env", "learning")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", choices=tuple(ENV_IDS), default="corridor")
    parser.add_argument("--models", nargs="+", default=["expire_span", "transformer_xl", "lstm", "gru", "none"])
    parser.add_argument("--config", type=Path, help="TOML file merged onto the env's quick preset")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a value")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:index] (default cpu)")
    parser.add_argument("--num-envs", type=int, help="envs per batch (default: the config's)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    parser.add_argument("--updates", type=int, default=10, help="timed updates per model (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed updates per model first (default 3)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models) - set(memory_models.MODEL_NAMES))
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; valid: {', '.join(memory_models.MODEL_NAMES)}")
    for name in ("num_envs", "updates"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.warmup < 0:
        parser.error(f"--warmup must be 0 or more, got {args.warmup}")
    overrides = [*args.set, f"train.bf16={str(args.bf16).lower()}"]
    if args.num_envs:
        overrides.append(f"train.num_envs={args.num_envs}")
    try:
        args.settings = resolve(preset_path(args.env), args.config, overrides)
        args.world = init_world(args.device)
    except (ConfigError, ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    return args


def timed_update(trainer: Trainer) -> float:
    """Seconds of one update, the device drained before and after."""
    synchronize = torch.cuda.synchronize if trainer.world.device.type == "cuda" else lambda: None
    synchronize()
    start = time.perf_counter()
    trainer.update()
    synchronize()
    return time.perf_counter() - start


def bench(args: argparse.Namespace) -> list[str]:
    trainers = {name: Trainer(args.env, name, args.settings, args.world, seed=0) for name in args.models}
    train = args.settings["train"]
    header = (
        f"{args.env}, {machine(args.world.device)}, unroll {train['unroll']}, bf16 {train['bf16']}, "
        f"median of {args.updates} updates per model"
    )
    for trainer in trainers.values():
        for _ in range(args.warmup):
            trainer.update()
        trainer.timing.acting = trainer.timing.env = trainer.timing.learning = 0.0
    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in tqdm(range(args.updates), desc="updates"):
        for name, trainer in trainers.items():
            seconds[name].append(timed_update(trainer))
    lines = [
        header,
        "| model | acting step | envs | agent steps/s | acting share | env share | learning share |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, trainer in trainers.items():
        steps_per_s = trainer.steps_per_update / statistics.median(seconds[name])
        phases = [getattr(trainer.timing, phase) for phase in PHASES]
        shares = " | ".join(f"{phase / sum(phases):.0%}" for phase in phases)
        mode = trainer.acting_mode.split(" (")[0]
        lines.append(f"| {name} | {mode} | {trainer.num_envs} | {steps_per_s:,.0f} | {shares} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    print("\n".join(bench(parse_args(argv))))


if __name__ == "__main__":
    main()
