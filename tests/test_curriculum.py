"""Curricula: promotion on training success, new stages only for episodes that start after it, exact resume."""

import pytest
import torch

from agents import evaluation
from agents.curriculum import Curriculum, check_curriculum_config
from agents.envs import make_batched_env
from runners import train_agent
from training.checkpoint import load_checkpoint
from training.config import resolve

STAGES = [{"max_length": 3}, {"max_length": 6}]


def corridor(num_envs: int = 8):
    env = make_batched_env("corridor", num_envs, "cpu", min_length=3, max_length=6, max_steps=12)
    env.reset(seed=0)
    return env


def lengths(env) -> torch.Tensor:
    return torch.as_tensor(env.length_of[env.layouts["start"].numpy()])  # N: each env's corridor length


SHIPPED = [
    (task, path)
    for task in ("corridor", "portal", "instruction")
    for path in sorted(train_agent.CONFIG_DIR.glob(f"{task}*.toml"))
]


@pytest.mark.parametrize(("task", "path"), SHIPPED, ids=lambda case: getattr(case, "stem", case))
def test_every_shipped_curriculum_ends_on_the_task_it_is_evaluated_on(task, path):
    config = resolve(train_agent.preset_path(task), path)
    stages = config["curriculum"]["stages"]
    reference = make_batched_env(task, 1, "cpu", **config["env"]).reference  # built from [env], as held out
    assert not stages or {key: getattr(reference, key) for key in stages[-1]} == stages[-1]


def test_promotion_needs_a_full_window_of_the_stage_at_the_threshold():
    env = corridor()
    curriculum = Curriculum(env, {"stages": STAGES, "threshold": 0.8, "window": 8}, torch.device("cpu"))
    everyone, half = torch.ones(8, dtype=torch.bool), torch.arange(8) < 4
    curriculum.add(everyone, {"success": torch.arange(8) < 5})
    assert not curriculum.after_update() and curriculum.stage == 0  # 5 of 8
    curriculum.add(half, {"success": everyone})
    assert not curriculum.after_update()  # 4 episodes are not a window: the last 12 count, 9 of 12 = 75%
    curriculum.add(half, {"success": everyone})
    assert curriculum.after_update() and curriculum.stage == 1  # the last 8: all won
    assert lengths(env).max() <= 6 and env._draw_range == (0, 16)  # stage 1's lengths 3 to 6 from now on
    assert not curriculum.after_update()  # the last stage stays


def test_episodes_that_began_before_a_promotion_count_for_no_stage():
    env = corridor(4)
    curriculum = Curriculum(env, {"stages": [*STAGES, {"max_length": 5}], "threshold": 0.5, "window": 2},
                            torch.device("cpu"))  # fmt: skip
    everyone, half = torch.ones(4, dtype=torch.bool), torch.tensor([True, True, False, False])
    curriculum.add(everyone, {"success": everyone})
    assert curriculum.after_update() and curriculum.stage == 1
    curriculum.add(half, {"success": everyone})  # rows 0, 1 finish episodes that began in stage 0
    curriculum.add(~half, {"success": everyone})  # so do rows 2, 3
    assert not curriculum.after_update()  # none of these counts for stage 1
    curriculum.add(half, {"success": everyone})  # rows 0, 1 finish episodes that began in stage 1
    assert curriculum.after_update() and curriculum.stage == 2  # 2 of stage 1's episodes, both won
    curriculum.add(everyone, {"success": torch.zeros(4, dtype=torch.bool)})
    assert curriculum.history == []  # the final stage keeps no counts


def test_a_stage_applies_to_episodes_that_start_after_it():
    env = corridor(64)
    Curriculum(env, {"stages": STAGES, "threshold": 1.0, "window": 1}, torch.device("cpu"))
    env.reset(seed=1)
    assert lengths(env).max() == 3  # stage 0 before the first reset
    env.set_task(max_length=6)
    assert lengths(env).max() == 3  # running episodes keep their corridor
    for _ in range(12):  # every episode ends within max_steps = 12
        env.step(torch.randint(0, 4, (64,)))
    assert lengths(env).max() > 3


def test_bad_stages_are_named():
    with pytest.raises(ValueError, match=r"curriculum.stages\[1\] sets n_rooms, which this env cannot change"):
        check_curriculum_config({"stages": [{"max_length": 4}, {"n_rooms": 3}], "threshold": 0.9, "window": 9},
                                ("min_length", "max_length"))  # fmt: skip
    with pytest.raises(ValueError, match="curriculum.threshold must be in"):
        check_curriculum_config({"stages": [{"max_length": 4}], "threshold": 0.0, "window": 9}, ("max_length",))
    with pytest.raises(ValueError, match="can draw lengths within that range only"):
        corridor().set_task(max_length=9)


ARGS = [
    "--env", "corridor", "--model", "lstm", "--seed", "2",
    "--set", "train.num_envs=8", "--set", "train.unroll=10", "--set", "model.d_model=16", "--set", "model.n_heads=2",
    "--set", "log.every_updates=1", "--set", "log.eval_episodes=0", "--set", "train.compile_acting=false",
    "--set", "env.max_length=6", "--set", "env.max_steps=12",
    "--set", "curriculum.stages=[{max_length = 3}, {max_length = 4}, {max_length = 6}]",
    "--set", "curriculum.window=4", "--set", "curriculum.threshold=0.3",
]  # fmt: skip


def run(logdir, *extra: str) -> dict:
    assert train_agent.main([*ARGS, "--logdir", str(logdir), *extra]) == 0
    (checkpoint,) = logdir.glob("*/checkpoint.pt")
    return load_checkpoint(checkpoint)


def test_an_interrupted_curriculum_run_resumes_exactly(tmp_path):
    whole = run(tmp_path / "whole", "--steps", "1600")
    assert whole["ranks"][0]["curriculum"]["stage"] == 2, "the run should pass through every stage"
    run(tmp_path / "half", "--steps", "160")
    (checkpoint,) = (tmp_path / "half").glob("*/checkpoint.pt")
    middle = load_checkpoint(checkpoint)["ranks"][0]["curriculum"]["stage"]
    assert train_agent.main(["--resume", str(checkpoint), *ARGS, "--steps", "1600"]) == 0  # the same command
    resumed = load_checkpoint(checkpoint)
    for name, value in whole["policy"].items():
        assert torch.equal(value, resumed["policy"][name]), name
    for key, value in whole["ranks"][0]["curriculum"].items():
        assert torch.equal(torch.as_tensor(value), torch.as_tensor(resumed["ranks"][0]["curriculum"][key])), key
    assert middle < 2  # the resumed part of the run crossed a promotion


def test_held_out_evaluation_uses_the_full_task(tmp_path, monkeypatch):
    built = []

    def recording(name, num_envs, device, **task):
        built.append(task)
        return make_batched_env(name, num_envs, device, **task)

    monkeypatch.setattr(evaluation, "make_batched_env", recording)
    never = ["--set", "curriculum.threshold=1.0", "--set", "curriculum.window=100000", "--set", "log.eval_episodes=4"]
    payload = run(tmp_path, "--steps", "80", *never)
    assert payload["ranks"][0]["curriculum"]["stage"] == 0  # training stayed on corridors of length 3
    assert built and all(task["max_length"] == 6 for task in built)


def test_resume_names_a_flag_that_disagrees_with_the_checkpoint(tmp_path, capsys):
    run(tmp_path, "--steps", "80")
    (checkpoint,) = tmp_path.glob("*/checkpoint.pt")
    for flag, value, message in [
        ("--env", "portal", "--env portal disagrees with the checkpoint's corridor"),
        ("--seed", "3", "--seed 3 disagrees with the checkpoint's 2"),
        ("--set", "train.lr=1.0", "--config/--set give train.lr = 1.0, the checkpoint's run has 0.0003"),
    ]:
        with pytest.raises(SystemExit):
            train_agent.main(["--resume", str(checkpoint), *ARGS, flag, value])
        assert message in capsys.readouterr().err
