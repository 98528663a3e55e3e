"""Train sb3-contrib's RecurrentPPO (an LSTM) on any env with a preset's settings: the peer beside this framework.

    python -m runners.recurrent_ppo --env popgym:popgym-RepeatPreviousEasy-v0 --config configs/popgym.toml
    python -m runners.recurrent_ppo --env corridor --steps 200000 --seed 1

The same settings as ``runners/train_agent.py`` (the env's quick preset, ``--config``, ``--set``) map onto
RecurrentPPO: ``train.num_envs`` envs (SB3's DummyVecEnv) of ``train.unroll`` steps per update, the
preset's learning rate, discount, GAE lambda, entropy and value costs, gradient clip and PPO epochs,
minibatches and clip; an LSTM of ``model.d_model`` units and ``model.n_layers`` layers with nothing before
or after it (``net_arch=[]``). The observation is flattened by gymnasium's ``FlattenObservation`` (one-hot
for discrete parts; Text parts such as minigrid's mission dropped), since SB3 takes no Tuple space, and
normalised by SB3's ``VecNormalize`` where ``agent.normalize_obs`` is set. Curricula are not followed, and
on the project's tasks (their reference gymnasium envs, which report no success) only returns are measured.

The run directory (<logdir>/<env>-recurrent_ppo-seed<S>-<time>) gets the TensorBoard scalars
``episode/return`` and ``episode/success`` (means over the episodes of every ``log.every_updates`` updates,
as train_agent.py logs them) and the final ``model.zip``; the held-out evaluation (one episode in each of
``log.eval_episodes`` envs seeded as train_agent.py's, sampled and greedy) is printed in train_agent.py's
format. An interrupted run starts again from the beginning: SB3 saves no rollout state to resume from.
Needs the bench extra: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch
from tqdm import tqdm

from agents.envs import check_env_name, make_reference_env
from agents.trainer import EVAL_SEED_OFFSET
from runners.train_agent import DEFAULT_LOGDIR, describe_evaluation, preset_path, run_directory
from training.config import ConfigError, resolve
from training.paths import PathError, check_writable_dir

MODEL_NAME = "recurrent_ppo"
CURRICULUM_ERROR = "RecurrentPPO does not follow a curriculum: its config's curriculum.stages must be empty"


def flat_env(name: str, settings: dict[str, Any]) -> gymnasium.Env:
    """One env whose observation is a flat Box: Text parts dropped, the rest flattened."""
    env = make_reference_env(name, **settings["env"])
    space = env.observation_space
    if isinstance(space, gymnasium.spaces.Dict):
        keep = [key for key, part in space.spaces.items() if not isinstance(part, gymnasium.spaces.Text)]
        if len(keep) < len(space.spaces):
            env = gymnasium.wrappers.FilterObservation(env, keep)
    return gymnasium.wrappers.FlattenObservation(env)


def episode_success(info: dict[str, Any], episode_return: float, settings: dict[str, Any]) -> float | None:
    """An ended episode's success: the env's info key, else the config's return threshold, else None."""
    gym = settings.get("gym", {})  # the tasks' presets have none; their reference envs report no success
    key = gym.get("success_key", "success")
    if key in info:
        return float(bool(info[key]))
    if gym.get("success_from_return"):
        return float(episode_return >= gym["success_return"])
    return None


def build_model(name: str, settings: dict[str, Any], seed: int):
    """RecurrentPPO on ``train.num_envs`` flattened envs, with the preset's settings."""
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    train, model, ppo = settings["train"], settings["model"], settings["ppo"]
    num_envs = train["num_envs"]
    vec_env = make_vec_env(lambda: flat_env(name, settings), n_envs=num_envs, seed=seed)
    if settings.get("agent", {}).get("normalize_obs"):
        vec_env = VecNormalize(vec_env, norm_reward=False, gamma=train["discount"])
    return RecurrentPPO(
        "MlpLstmPolicy",
        vec_env,
        n_steps=train["unroll"],
        batch_size=num_envs * train["unroll"] // ppo["minibatches"],
        n_epochs=ppo["epochs"],
        learning_rate=train["lr"],
        gamma=train["discount"],
        gae_lambda=train["gae_lambda"],
        clip_range=ppo["clip"],
        ent_coef=train["entropy_cost"],
        vf_coef=train["value_cost"],
        max_grad_norm=train["grad_clip"],
        target_kl=ppo["target_kl"] or None,
        policy_kwargs={"lstm_hidden_size": model["d_model"], "n_lstm_layers": model["n_layers"], "net_arch": []},
        device="cpu",
        seed=seed,
    )


def episode_logger(settings: dict[str, Any], writer, bar: tqdm):
    """An SB3 callback: per ``log.every_updates`` rollouts, the mean return (and success) of the episodes that
    ended in them, to TensorBoard and the bar."""
    from stable_baselines3.common.callbacks import BaseCallback

    every = settings["log"]["every_updates"]

    class EpisodeLogger(BaseCallback):
        def __init__(self):
            super().__init__()
            self.returns: list[float] = []
            self.successes: list[float] = []
            self.rollouts = 0

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:  # SB3's Monitor: this env's episode ended at this step
                    self.returns.append(float(info["episode"]["r"]))
                    success = episode_success(info, self.returns[-1], settings)
                    if success is not None:
                        self.successes.append(success)
            return True

        def _on_rollout_end(self) -> None:
            self.rollouts += 1
            bar.update(self.training_env.num_envs * self.model.n_steps)
            if self.rollouts % every or not self.returns:
                return
            step = self.num_timesteps
            writer.add_scalar("episode/return", float(np.mean(self.returns)), step)
            if self.successes:
                writer.add_scalar("episode/success", float(np.mean(self.successes)), step)
            bar.set_postfix(ret=f"{np.mean(self.returns):.2f}")
            self.returns, self.successes = [], []

    return EpisodeLogger()


def evaluate(model, name: str, settings: dict[str, Any], episodes: int, seed: int) -> dict[str, float]:
    """Sampled and greedy success, return and length over one episode in each of ``episodes`` envs (env i
    seeded ``seed + i``, as train_agent.py's evaluation); no ``success`` where the env has no measure."""
    results: dict[str, float] = {"episodes": float(episodes)}
    for greedy in (False, True):
        played = play(model, name, settings, episodes, seed, greedy)
        suffix = "_greedy" if greedy else ""
        results |= {f"{key}{suffix}": value for key, value in played.items()}
    return results


def play(model, name: str, settings: dict[str, Any], episodes: int, seed: int, greedy: bool) -> dict[str, float]:
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env = make_vec_env(lambda: flat_env(name, settings), n_envs=episodes, seed=seed)
    if isinstance(model.get_env(), VecNormalize):  # the training statistics, frozen
        env = VecNormalize(env, training=False, norm_reward=False)
        env.obs_rms = model.get_env().obs_rms
    obs, state = env.reset(), None
    starts = np.ones(episodes, dtype=bool)
    ended: dict[int, tuple[float, float, float | None]] = {}
    while len(ended) < episodes:
        actions, state = model.predict(obs, state=state, episode_start=starts, deterministic=greedy)
        obs, _, starts, infos = env.step(actions)
        for index, info in enumerate(infos):
            if starts[index] and index not in ended:
                episode = info["episode"]
                ended[index] = (episode["r"], episode["l"], episode_success(info, episode["r"], settings))
    env.close()
    values = [ended[index] for index in range(episodes)]
    results = {"return": float(np.mean([v[0] for v in values])), "length": float(np.mean([v[1] for v in values]))}
    if all(v[2] is not None for v in values):
        results["success"] = float(np.mean([v[2] for v in values]))
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runners.recurrent_ppo",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--env", required=True, help="a task or any registered gymnasium id (module:Id)")
    parser.add_argument("--config", type=Path, help="TOML file merged onto the env's quick preset")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a value")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--steps", type=int, help="agent steps (default: the config's train.steps)")
    parser.add_argument("--logdir", type=Path, default=DEFAULT_LOGDIR, help="parent of the run directory")
    return parser


def settings_of(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The resolved config, checked for what RecurrentPPO can run; any bad input stops here."""
    if importlib.util.find_spec("sb3_contrib") is None:
        parser.error("RecurrentPPO needs sb3-contrib: pip install -e '.[bench]'")
    try:
        check_env_name(args.env)
        settings = resolve(preset_path(args.env), args.config, args.set)
        check_writable_dir(args.logdir, "--logdir")
    except (ConfigError, PathError, ValueError) as error:
        parser.error(str(error))
    if args.steps is not None:
        if args.steps < 1:
            parser.error(f"--steps must be at least 1, got {args.steps}")
        settings["train"]["steps"] = args.steps
    if settings["curriculum"]["stages"]:
        parser.error(CURRICULUM_ERROR)
    train, ppo = settings["train"], settings["ppo"]
    if train["num_envs"] * train["unroll"] % ppo["minibatches"]:
        parser.error("train.num_envs x train.unroll must divide into ppo.minibatches for RecurrentPPO")
    return settings


def main(argv: list[str] | None = None) -> int:
    from torch.utils.tensorboard import SummaryWriter

    parser = build_parser()
    args = parser.parse_args(argv)
    settings = settings_of(args, parser)
    if settings["train"]["cpu_threads"] > 0:
        torch.set_num_threads(settings["train"]["cpu_threads"])
    model = build_model(args.env, settings, args.seed)
    run_dir = run_directory(args.logdir, args.env, MODEL_NAME, args.seed)
    writer = SummaryWriter(str(run_dir))
    steps = settings["train"]["steps"]
    with tqdm(total=steps, unit="step", desc=f"{args.env} {MODEL_NAME}", mininterval=2) as bar:
        model.learn(total_timesteps=steps, callback=episode_logger(settings, writer, bar))
    writer.close()
    model.save(run_dir / "model.zip")
    episodes = settings["log"]["eval_episodes"]
    if episodes > 0:
        results = evaluate(model, args.env, settings, episodes, EVAL_SEED_OFFSET + args.seed)
        print(f"{describe_evaluation(results)}; model {run_dir / 'model.zip'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
