"""Train an actor-critic agent with a memory model on a memory gridworld or any gymnasium env.

    python runners/train_agent.py --env corridor                      # quick Corridor preset, expire_span
    python runners/train_agent.py --env corridor --model none         # the memoryless baseline
    python runners/train_agent.py --env portal --config configs/portal.toml --device cuda
    python runners/train_agent.py --env corridor --set train.lr=3e-4 --set model.n_layers=3
    python runners/train_agent.py --env corridor --set train.algorithm=ppo      # PPO instead of A2C
    python runners/train_agent.py --env corridor --config configs/corridor_long.toml  # U(3, 200), a curriculum
    torchrun --nproc_per_node 2 runners/train_agent.py --env corridor  # data-parallel, one env batch per rank
    python runners/train_agent.py --resume runs/<run>/checkpoint.pt   # continue exactly where it stopped
    python runners/train_agent.py --resume runs/<run>/checkpoint.pt --eval 200  # held-out sampled and greedy
    python runners/train_agent.py --env CartPole-v1 --model lstm       # any gymnasium id: the default preset
    python runners/train_agent.py --env popgym:popgym-RepeatPreviousEasy-v0 --config configs/popgym.toml

Each run writes TensorBoard logs and checkpoints into one directory, <logdir>/<env>-<model>-seed<S>-<time>.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

import memory_models
from agents.checkpoints import check_resume_steps, load_agent_checkpoint, resume_trainer
from agents.config_checks import check_agent_config
from agents.envs import ENV_IDS, check_env_name, is_task
from agents.episode_stats import TASK_COUNTERS
from agents.evaluation import evaluate
from agents.rollout_video import play_episodes, write_animation
from agents.trainer import EVAL_SEED_OFFSET, Trainer, model_options
from training.checkpoint import remove_stale_temps, save_checkpoint
from training.config import ConfigError, load_toml, merge, resolve
from training.distributed import World, close_world, init_world
from training.divergence import DivergenceGuard
from training.errors import RunStopped
from training.paths import check_writable_dir, create_run_directory

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_MODEL = "expire_span"
CHECKPOINT_NAME = "checkpoint.pt"
DEFAULT_LOGDIR = Path("runs")


DEFAULT_PRESET = "default_quick.toml"  # any gymnasium env without a preset of its own


def preset_path(env: str) -> Path:
    """The env's quick preset: the default config and the schema every other config must fit."""
    return CONFIG_DIR / (f"{env}_quick.toml" if is_task(env) else DEFAULT_PRESET)


def load_run_checkpoint(path: Path) -> dict:
    """A train_agent.py checkpoint, its config completed with the keys added to the env's preset since it was
    written: each key added keeps the former behaviour at its preset value, so an older run resumes as it ran."""
    payload = load_agent_checkpoint(path)
    payload["config"] = merge(load_toml(preset_path(payload["env_name"])), payload["config"])
    return payload


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train_agent.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--env",
        help=f"a task ({', '.join(ENV_IDS)}) or any registered gymnasium id, module:Id to import its module first "
        "(required unless --resume)",
    )
    parser.add_argument("--model", choices=memory_models.MODEL_NAMES, help=f"memory model (default {DEFAULT_MODEL})")
    parser.add_argument("--config", type=Path, help="TOML file merged onto the env's quick preset")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a value")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    parser.add_argument("--steps", type=int, help="total agent steps over all ranks (default: the config's steps)")
    parser.add_argument("--logdir", type=Path, help="parent of the run directory (default runs)")
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="CHECKPOINT",
        help="continue the run that wrote CHECKPOINT (the run's own flags may be repeated if they agree)",
    )
    parser.add_argument(
        "--eval", type=int, metavar="EPISODES", help="with --resume: only evaluate on EPISODES held-out episodes"
    )
    return parser


def run_directory(logdir: Path, env: str, model: str, seed: int) -> Path:
    """Create the run's own directory (atomically: a run started at the same second gets a ``-2`` suffix)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", env)  # a gymnasium id may hold ':' or '/'
    return create_run_directory(logdir, f"{name}-{model}-seed{seed}-{stamp}")


def divergence_guard(trainer: Trainer, checkpoint: Path) -> DivergenceGuard:
    train = trainer.config["train"]
    cause = (
        f"the learning rate (train.lr = {train['lr']:g}) is too high, or the gradient clip "
        f"(train.grad_clip = {train['grad_clip']:g}) too loose, for these settings"
    )
    return DivergenceGuard(checkpoint, cause, distributed=trainer.world.distributed)


def resume_disagreement(args: argparse.Namespace, payload: dict) -> str | None:
    """With --resume, the flags of the command that started the run may be repeated (so the same command
    continues it); returns what disagrees with the checkpoint, or None."""
    checkpoint = {"env": payload["env_name"], "model": payload["model_name"], "seed": payload["seed"]}
    for flag, value in checkpoint.items():
        given = getattr(args, flag)
        if given is not None and given != value:
            return f"--{flag} {given} disagrees with the checkpoint's {value}"
    if args.logdir is not None and args.logdir.resolve() != args.resume.resolve().parent.parent:
        return f"--logdir {args.logdir} disagrees with the checkpoint's run directory {args.resume.parent}"
    if args.config is None and not args.set:
        return None
    config = resolve(preset_path(payload["env_name"]), args.config, args.set)
    key = first_difference(config, payload["config"], skip={"train.steps"})
    if key is not None:
        given, stored = lookup(config, key), lookup(payload["config"], key)
        return f"--config/--set give {key} = {given!r}, the checkpoint's run has {stored!r}"
    return None


def first_difference(a: dict, b: dict, skip: set[str], prefix: str = "") -> str | None:
    """The dotted name of the first key whose value differs between two nested configs (``skip`` aside)."""
    for key in sorted(set(a) | set(b)):
        name = f"{prefix}{key}"
        if name in skip:
            continue
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            found = first_difference(a[key], b[key], skip, prefix=f"{name}.")
            if found is not None:
                return found
        elif a.get(key) != b.get(key):
            return name
    return None


def lookup(config: dict, dotted: str) -> object:
    for part in dotted.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def setup(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[Trainer, World]:
    """Check every input and build the trainer; any bad input stops here, before anything is written."""
    try:
        payload = load_run_checkpoint(args.resume) if args.resume else None
        if args.eval is not None and (payload is None or args.eval < 1):
            parser.error(f"--eval needs --resume CHECKPOINT and at least 1 episode, got {args.eval}")
        if payload is None and args.env is None:
            parser.error("--env is required (" + ", ".join(ENV_IDS) + " or a gymnasium id) unless --resume is given")
        if payload is not None:
            disagreement = resume_disagreement(args, payload)
            if disagreement:
                parser.error(f"--resume: {disagreement}")
            env, model, seed = payload["env_name"], payload["model_name"], payload["seed"]
            config = payload["config"]
            check_resume_steps(payload, args.steps)
        else:
            env, model, seed = args.env, args.model or DEFAULT_MODEL, 0 if args.seed is None else args.seed
            check_env_name(env)
            config = resolve(preset_path(env), args.config, args.set)
        if args.steps is not None:
            if args.steps < 1:
                parser.error(f"--steps must be at least 1, got {args.steps}")
            config["train"]["steps"] = args.steps
        check_agent_config(config, model_options(model, config["model"]))
        if args.eval is None and args.resume:  # an evaluation writes nothing
            check_writable_dir(args.resume.parent, "--resume")
        elif args.eval is None:
            check_writable_dir(args.logdir or DEFAULT_LOGDIR, "--logdir")
        world = init_world(args.device)
        trainer = Trainer(env, model, config, world, seed)
        if payload is not None:
            resume_trainer(trainer, payload, args.resume)
    except (ConfigError, ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    return trainer, world


def log_scalars(writer, trainer: Trainer, metrics: dict, record, episodes: dict | None, seconds: float) -> None:
    step = trainer.global_step
    for name, value in metrics.items():
        writer.add_scalar(name, value.item(), step)
    writer.add_scalar("train/learning_rate", trainer.optimizer.param_groups[0]["lr"], step)
    writer.add_scalar("train/entropy_cost", trainer.learner.entropy_cost, step)
    if trainer.curriculum.active:
        writer.add_scalar("curriculum/stage", trainer.curriculum.stage, step)
    for layer, size in enumerate(record.memory_size.tolist()):
        writer.add_scalar(f"memory/size_layer{layer}", size, step)
    if record.spans is not None:
        for layer, spans in enumerate(record.spans.float()):
            writer.add_histogram(f"memory/spans_layer{layer}", spans.flatten(), step)
    if episodes is not None:
        for name, value in episodes.items():
            if name != "episodes":
                writer.add_scalar(f"episode/{name}", value, step)
    timing = trainer.timing
    steps = trainer.config["log"]["every_updates"] * trainer.steps_per_update
    writer.add_scalar("speed/steps_per_s", steps / seconds, step)
    for phase in ("acting", "env", "learning"):
        phase_seconds = getattr(timing, phase)
        writer.add_scalar(f"speed/{phase}_steps_per_s", steps / max(phase_seconds, 1e-9), step)
        writer.add_scalar(f"speed/{phase}_share", phase_seconds / seconds, step)
        setattr(timing, phase, 0.0)


def log_evaluation(writer, trainer: Trainer, run_dir: Path) -> dict[str, float]:
    """Held-out success and return, and one rendered rollout (its frames in TensorBoard, the GIF in the run dir)."""
    config, seed = trainer.config, EVAL_SEED_OFFSET + trainer.seed
    episodes, device = config["log"]["eval_episodes"], trainer.world.device
    results = evaluate(trainer.policy, trainer.env_name, config["env"], episodes, seed, device, config.get("gym"))
    step = trainer.global_step
    for name in ("return", "success", "length", *TASK_COUNTERS):
        if name not in results:  # an env without a success measure, a task without counters
            continue
        writer.add_scalar(f"eval/{name}", results[name], step)
        writer.add_scalar(f"eval/{name}_greedy", results[f"{name}_greedy"], step)
    frames = play_episodes(trainer.policy, trainer.env_name, config["env"], episodes=1, seed=seed)
    picks = torch.linspace(0, len(frames) - 1, min(len(frames), 16)).long().tolist()
    writer.add_images("eval/rollout_frames", torch.from_numpy(frames[picks]), step, dataformats="NHWC")
    write_animation(frames, run_dir / f"rollout-step{step}.gif")
    return results


def train(trainer: Trainer, world: World, run_dir: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    log = trainer.config["log"]
    total = trainer.config["train"]["steps"]
    # A resumed run drops the events past its checkpoint that the run before it logged: no step appears twice.
    purge_step = trainer.global_step + 1 if trainer.updates else None
    writer = SummaryWriter(run_dir, purge_step=purge_step) if world.is_main else None
    if world.is_main and trainer.resume_note:
        print(f"note: {trainer.resume_note}", flush=True)
    if world.is_main:
        compiling = " (compiles once, on the first update: about 30 s)" if "compiled" in trainer.acting_mode else ""
        print(f"acting step: {trainer.acting_mode}{compiling}", flush=True)
    bar = tqdm(total=total, initial=trainer.global_step, unit="step", disable=not world.is_main)
    checkpoint = run_dir / CHECKPOINT_NAME
    evaluating = writer is not None and log["eval_episodes"] > 0
    interval_start = time.perf_counter()
    guard = divergence_guard(trainer, checkpoint)
    while trainer.global_step < total:
        metrics, record = trainer.update()
        guard.check(trainer.global_step, metrics, trainer.policy)
        bar.update(trainer.steps_per_update)
        if trainer.updates % log["every_updates"] == 0:
            episodes = trainer.stats.read()
            if episodes is not None and not getattr(trainer.env, "reports_success", True):
                del episodes["success"]  # the env has no success measure: return only
            seconds = time.perf_counter() - interval_start
            if writer is not None:
                log_scalars(writer, trainer, metrics, record, episodes, seconds)
            sps = log["every_updates"] * trainer.steps_per_update / seconds
            postfix = {"steps/s": f"{sps:,.0f}"}
            if episodes is not None:
                postfix["return"] = f"{episodes['return']:.2f}"
                if "success" in episodes:
                    postfix["success"] = f"{episodes['success']:.0%}"
            bar.set_postfix(postfix)
            interval_start = time.perf_counter()
        if trainer.updates % log["checkpoint_every_updates"] == 0:
            save(trainer, world, checkpoint)
        if evaluating and trainer.updates % log["eval_every_updates"] == 0:
            log_evaluation(writer, trainer, run_dir)
            interval_start = time.perf_counter()  # steps/s measures training alone
    bar.close()
    save(trainer, world, checkpoint)
    if evaluating:
        results = log_evaluation(writer, trainer, run_dir)
        print(describe_evaluation(results, checkpoint))
    if writer is not None:
        writer.close()


def describe_evaluation(results: dict[str, float], checkpoint: Path | None = None) -> str:
    """The held-out results as one line (ending in the checkpoint's path when given), and a second line with
    the instructions per episode where the task counts them."""
    greedy = {name: results[f"{name}_greedy"] for name in ("return", "length", "success") if name in results}
    text = f"held-out evaluation ({results['episodes']:.0f} episodes): {describe_policy('sampled', results)}; "
    text += describe_policy("greedy", greedy)
    if checkpoint is not None:
        text += f"; checkpoint {checkpoint}"
    if "instructions_received" not in results:
        return text
    per_episode = "; ".join(
        f"{policy} {results[f'instructions_right{suffix}']:.2f} right, {results[f'instructions_failed{suffix}']:.2f} "
        f"wrong sender, {results[f'instructions_wrong{suffix}']:.2f} penalised speech "
        f"({results[f'instructions_repeated{suffix}']:.2f} to characters already dealt with)"
        for policy, suffix in (("sampled", ""), ("greedy", "_greedy"))
    )
    return f"{text}\ninstructions per episode (of {results['instructions_received']:.2f} received): {per_episode}"


def describe_policy(policy: str, results: dict[str, float]) -> str:
    """``sampled success 50.0%, return 0.500, length 20.0``; no success for an env without a success measure."""
    success = f"success {results['success']:.1%}, " if "success" in results else ""
    return f"{policy} {success}return {results['return']:.3f}, length {results['length']:.1f}"


def save(trainer: Trainer, world: World, path: Path) -> None:
    payload = trainer.checkpoint_payload()  # collective: every rank takes part
    if world.is_main:
        save_checkpoint(path, payload)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    trainer, world = setup(args, parser)
    if args.eval is not None:
        seed = EVAL_SEED_OFFSET + trainer.seed
        config = trainer.config
        env_config, gym_config = config["env"], config.get("gym")
        results = evaluate(trainer.policy, trainer.env_name, env_config, args.eval, seed, world.device, gym_config)
        print(describe_evaluation(results))
        close_world(world)
        return 0
    if args.resume:
        run_dir = args.resume.parent  # a resumed run goes on logging beside its checkpoint
        if world.is_main:
            remove_stale_temps(args.resume)
    elif world.is_main:
        run_dir = run_directory(args.logdir or DEFAULT_LOGDIR, trainer.env_name, trainer.model_name, trainer.seed)
    else:
        run_dir = args.logdir or DEFAULT_LOGDIR  # only rank 0 writes
    try:
        train(trainer, world, run_dir)
    except RunStopped as error:
        if world.is_main:
            tqdm.write(f"error: {error}", file=sys.stderr)  # on a line of its own, below the progress bar
        return 1
    finally:
        close_world(world)
    return 0


if __name__ == "__main__":
    sys.exit(main())
