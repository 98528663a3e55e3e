"""End-to-end agent throughput: acting, env and learning of the training loop, per memory model.

    python -m runners.bench_agent          # quick Corridor preset on CPU: expire_span, transformer_xl, lstm, gru, none
    python -m runners.bench_agent --device cuda --config configs/corridor.toml --num-envs 1024 --bf16
    python -m runners.bench_agent --models expire_span --set train.compile_acting=false
    python -m runners.bench_agent --models expire_span lstm --algorithms a2c ppo --recurrent-ppo  # with the peer

Each model and algorithm gets its own ``Trainer`` (the object ``runners/train_agent.py`` drives) and
they take turns, one update each, so that load from other processes on a shared machine hits them
alike. ``--recurrent-ppo`` adds sb3-contrib's RecurrentPPO (an LSTM of the same width and depth, the
same envs, unroll and PPO epochs and minibatches) on the reference gymnasium env, in the same turns:
install it with ``pip install -e '.[bench]'``.
A figure is the median over the timed updates of agent steps per second (envs x unroll / seconds of
one update, the device synchronised before and after). The phase shares come from the trainer's
host clock: on CUDA they say where the host waited, not where the GPU worked.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import statistics
import time
from pathlib import Path

import torch
from tqdm import tqdm

import memory_models
from agents.config_checks import ALGORITHMS
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
    parser.add_argument("--algorithms", nargs="+", choices=ALGORITHMS, default=["a2c"], help="default a2c")
    parser.add_argument(
        "--recurrent-ppo", action="store_true", help="also time sb3-contrib's RecurrentPPO (the bench extra)"
    )
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
    if args.recurrent_ppo and importlib.util.find_spec("sb3_contrib") is None:
        parser.error("--recurrent-ppo needs sb3-contrib: pip install -e '.[bench]'")
    return args


def timed_update(trainer: Trainer) -> float:
    """Seconds of one update, the device drained before and after."""
    synchronize = torch.cuda.synchronize if trainer.world.device.type == "cuda" else lambda: None
    synchronize()
    start = time.perf_counter()
    trainer.update()
    synchronize()
    return time.perf_counter() - start


def with_algorithm(settings: dict, algorithm: str) -> dict:
    settings = copy.deepcopy(settings)
    settings["train"]["algorithm"] = algorithm
    return settings


def bench(args: argparse.Namespace) -> list[str]:
    trainers = {
        f"{name}, {algorithm}": Trainer(args.env, name, with_algorithm(args.settings, algorithm), args.world, seed=0)
        for name in args.models
        for algorithm in args.algorithms
    }
    peer = RecurrentPPOTurns(args.env, args.settings) if args.recurrent_ppo else None
    train = args.settings["train"]
    header = (
        f"{args.env}, {machine(args.world.device)}, unroll {train['unroll']}, bf16 {train['bf16']}, "
        f"median of {args.updates} updates per model"
    )
    for trainer in trainers.values():
        for _ in range(args.warmup):
            trainer.update()
        trainer.timing.acting = trainer.timing.env = trainer.timing.learning = 0.0
    if peer is not None:
        for _ in range(args.warmup):
            peer.update()
    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in tqdm(range(args.updates), desc="updates"):
        for name, trainer in trainers.items():
            seconds[name].append(timed_update(trainer))
        if peer is not None:
            peer.seconds.append(peer.update())
    lines = [
        header,
        "| model, algorithm | acting step | envs | agent steps/s | acting share | env share | learning share |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, trainer in trainers.items():
        steps_per_s = trainer.steps_per_update / statistics.median(seconds[name])
        phases = [getattr(trainer.timing, phase) for phase in PHASES]
        shares = " | ".join(f"{phase / sum(phases):.0%}" for phase in phases)
        mode = trainer.acting_mode.split(" (")[0]
        lines.append(f"| {name} | {mode} | {trainer.num_envs} | {steps_per_s:,.0f} | {shares} |")
    if peer is not None:
        steps_per_s = peer.steps_per_update / statistics.median(peer.seconds)
        name = "sb3-contrib RecurrentPPO (lstm)"
        lines.append(f"| {name} | SB3, reference env | {peer.num_envs} | {steps_per_s:,.0f} | | | |")
    return lines


class RecurrentPPOTurns:
    """sb3-contrib's RecurrentPPO on the reference env, one rollout and update per ``update()`` call.

    Built by ``runners/recurrent_ppo.py`` from the same settings: an LSTM as wide and deep as the preset's
    memory model with nothing before or after it, ``unroll`` steps of ``num_envs`` reference envs (SB3's
    DummyVecEnv) per update, the preset's PPO epochs and minibatches.
    """

    def __init__(self, env: str, settings: dict):
        from runners.recurrent_ppo import build_model

        train = settings["train"]
        self.num_envs = train["num_envs"]
        self.steps_per_update = self.num_envs * train["unroll"]
        self.model = build_model(env, settings, seed=0)
        self.seconds: list[float] = []

    def update(self) -> float:
        """Seconds of one rollout and update."""
        start = time.perf_counter()
        self.model.learn(total_timesteps=self.steps_per_update, reset_num_timesteps=False)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    print("\n".join(bench(parse_args(argv))))


if __name__ == "__main__":
    main()
