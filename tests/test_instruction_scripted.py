"""Scripted agents on the shipped Instruction presets: perfect memory succeeds in every episode, and
no strategy that does not remember the instructions succeeds in more than 5% (envs/instruction_scripted.py)."""

import pytest

from envs.instruction import SLOTS_PER_ROOM, front_cell
from envs.instruction_batched import BatchedInstructionEnv
from envs.instruction_scripted import MEMORYLESS, ScriptedAgent, evaluate
from runners import train_agent
from training.config import resolve

QUICK_CONFIG = resolve(train_agent.preset_path("instruction"))
QUICK, STAGES = QUICK_CONFIG["env"], QUICK_CONFIG["curriculum"]["stages"]
PAPER = resolve(train_agent.preset_path("instruction"), train_agent.CONFIG_DIR / "instruction.toml")["env"]
PRESETS = {"quick": (QUICK, 300), "paper": (PAPER, 60)}  # [env] tables and episodes to play (1000 steps each)


def test_the_presets_are_the_final_curriculum_stage_and_the_paper_scale():
    assert QUICK["delay"] >= 50 and QUICK["n_wanderers"] > 0 and QUICK["chatter_prob"] > 0
    assert {key: QUICK[key] for key in STAGES[-1]} == STAGES[-1]  # the curriculum ends on [env]
    assert (PAPER["n_rooms"], PAPER["n_characters"], PAPER["n_wanderers"]) == (4, 8, 4) and PAPER["delay"] >= 300
    for env in (QUICK, PAPER):  # guessing every sender right is rare
        assert (env["n_characters"] - 1) ** -env["n_instructions"] <= 0.05


@pytest.mark.parametrize("preset", PRESETS)
def test_perfect_memory_succeeds_in_every_episode(preset):
    env, episodes = PRESETS[preset]
    result = evaluate("oracle", episodes, **env)
    assert result == {"success": 1.0, "return": pytest.approx(env["n_instructions"]), "right": env["n_instructions"],
                      "wrong": 0.0}  # fmt: skip


@pytest.mark.parametrize("stage", range(len(STAGES)))
def test_perfect_memory_succeeds_in_every_curriculum_stage(stage):
    assert evaluate("oracle", 300, **{**QUICK, **STAGES[stage]})["success"] == 1.0


def test_perfect_memory_succeeds_with_random_homes_too():
    assert evaluate("oracle", 300, **{**QUICK, "random_homes": True})["success"] == 1.0


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("strategy", MEMORYLESS)
def test_strategies_without_memory_of_the_instructions_succeed_at_most_5_percent(preset, strategy):
    env, episodes = PRESETS[preset]
    result = evaluate(strategy, episodes, seed=1, **env)
    assert result["success"] <= 0.05
    if strategy == "guess":  # it carries out each instruction it guesses right: one in n_characters - 1
        expected = env["n_instructions"] / (env["n_characters"] - 1)
        assert result["right"] == pytest.approx(expected, rel=0.35)
        assert result["right"] + result["wrong"] == pytest.approx(env["n_instructions"])  # one attempt each
    if strategy == "silence":
        assert result["success"] == result["right"] == result["wrong"] == 0.0
        assert result["return"] <= 0.0  # the walk bonus's potential is never above its start: nothing to gain
        if env["walk_bonus"] == 0:
            assert result["return"] == 0.0


def test_the_patrols_visit_every_niche_and_speak_only_to_characters():
    twin = BatchedInstructionEnv(4, **{**QUICK, "delay": 5})
    agent = ScriptedAgent(twin, "speak_to_all")
    twin.reset(seed=0)
    fronts, rewards = set(), []
    for _ in range(150):
        fronts.update(zip(twin.x.tolist(), twin.y.tolist(), strict=True))
        actions = agent.act()
        _, reward, terminated, truncated, _ = twin.step(actions)
        rewards += reward[actions >= 4].tolist()
        agent.episodes_ended(terminated | truncated)
    front_cells = {front_cell(slot) for slot in range(SLOTS_PER_ROOM * QUICK["n_rooms"])}
    assert front_cells <= fronts and 0.0 not in rewards  # nothing said to nobody
    with pytest.raises(ValueError, match="strategy must be one of oracle, guess"):
        ScriptedAgent(twin, "telepathy")
