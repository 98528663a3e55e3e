"""A2C and PPO: one policy for acting and learning, PPO's rules, greedy evaluation, the learning-rate decay."""

from pathlib import Path

import pytest
import torch

import memory_models
from agents.envs import ENV_IDS
from agents.evaluation import evaluate
from agents.learner import action_log_probs
from agents.rollout import collect
from agents.trainer import Trainer
from training.config import resolve
from training.distributed import World

CPU = World(rank=0, world_size=1, device=torch.device("cpu"))
CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SMALL = ["train.num_envs=4", "train.unroll=20", "train.compile_acting=false", "train.cuda_graphs=false"]
SMALL += ["ppo.minibatches=2"]  # no more than the rows


def shipped_agent_configs() -> list[tuple[str, Path]]:
    """Every agent config shipped in configs/ (a task's quick preset and the files named after the task)."""
    return [(env, path) for env in ENV_IDS for path in sorted(CONFIGS.glob(f"{env}*.toml"))]


def config_for(env: str, path: Path, *overrides: str) -> dict:
    return resolve(CONFIGS / f"{env}_quick.toml", path, [*SMALL, *overrides])


@pytest.mark.parametrize("env, path", shipped_agent_configs(), ids=lambda value: getattr(value, "stem", value))
@pytest.mark.parametrize("model", memory_models.MODEL_NAMES)
def test_the_learner_recomputes_the_policy_that_acted(env, path, model):
    """Under every shipped config (random shortening on where it has it) the KL from the acting logits to the
    learner's first recompute is zero to float rounding."""
    trainer = Trainer(env, model, config_for(env, path), CPU, seed=0)
    for _ in range(2):  # the second window starts from a carried memory
        metrics, _ = trainer.update()
        assert abs(metrics["policy/kl_acting_learner"].item()) < 1e-6


def test_random_shortening_per_acting_step_would_be_caught():
    """The KL check can fail: a memory that draws its shortening at every call acts with another policy."""
    config = config_for("corridor", CONFIGS / "corridor.toml", "model.expire_span.init_bias=2.0")
    trainer = Trainer("corridor", "expire_span", config, CPU, seed=0)
    memory = trainer.policy.memory
    original = memory.forward

    def redraw_every_call(x, state, first):
        return original(x, memory.begin_window(state), first)

    memory.forward = redraw_every_call
    trainer.update()  # fills the memory
    metrics, _ = trainer.update()
    assert metrics["policy/kl_acting_learner"].item() > 1e-4


def corridor_trainer(model: str = "lstm", *overrides: str) -> Trainer:
    config = resolve(
        CONFIGS / "corridor_quick.toml",
        overrides=[*SMALL, "model.d_model=16", "model.n_heads=2", "train.num_envs=6", "train.unroll=10", *overrides],
    )
    config["env"].update(max_length=6, max_steps=12)
    return Trainer("corridor", model, config, CPU, seed=0)


@pytest.mark.parametrize("model", ["lstm", "expire_span", "transformer_xl", "memformer"])
def test_a_minibatch_of_rows_recomputes_as_in_the_whole_batch(model):
    """PPO splits rows, never time: a row's window recomputed in a minibatch equals its recompute in the batch."""
    trainer = corridor_trainer(model)
    trainer.update()
    rows = torch.tensor([4, 1])
    with torch.no_grad():
        rollout, _ = collect(trainer.policy, trainer.acting_step, trainer.env, trainer.carry, 10, [], trainer.timing)
        whole, whole_values, _, _ = trainer.policy(rollout.obs, rollout.start_state, rollout.first)
        part, part_values, _, _ = trainer.policy(rollout.obs[rows], rollout.start_state.rows(rows), rollout.first[rows])
    torch.testing.assert_close(part, whole[rows], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(part_values, whole_values[rows], rtol=1e-5, atol=1e-5)


def test_ppo_takes_epochs_times_minibatches_steps_and_stops_early_at_the_target_kl():
    trainer = corridor_trainer("lstm", "train.algorithm=ppo", "ppo.epochs=3", "ppo.minibatches=2")
    steps = []
    original = trainer.optimizer.step
    trainer.optimizer.step = lambda *a, **k: steps.append(1) or original(*a, **k)
    metrics, record = trainer.update()
    assert len(steps) == 6 and metrics["ppo/epochs"].item() == 3
    assert abs(metrics["policy/kl_acting_learner"].item()) < 1e-6 and record.memory_size.shape == (2,)
    early = corridor_trainer("lstm", "train.algorithm=ppo", "ppo.epochs=5", "ppo.target_kl=1e-12", "train.lr=1e-2")
    metrics, _ = early.update()
    assert metrics["ppo/epochs"].item() == 1  # the first epoch moved the policy past the tiny target


def test_a_ppo_step_raises_the_surrogate_it_optimises():
    """One epoch, one minibatch, policy loss alone: the step raises mean(normalised advantage x ratio)."""
    overrides = ["train.algorithm=ppo", "ppo.epochs=1", "ppo.minibatches=1", "train.entropy_cost=0.0"]
    trainer = corridor_trainer("lstm", *overrides, "train.value_cost=0.0", "train.lr=1e-3")
    rollout, _ = collect(trainer.policy, trainer.acting_step, trainer.env, trainer.carry, 10, [], trainer.timing)
    advantages, _ = trainer.learner.advantages(rollout)
    normalised = (advantages - advantages.mean()) / (advantages.std() + 1e-8)  # N x T
    trainer.learner.update(rollout)
    with torch.no_grad():
        logits, _, _, _ = trainer.policy(rollout.obs, rollout.start_state, rollout.first)
    _, before = action_log_probs(rollout.logits, rollout.actions)
    _, after = action_log_probs(logits, rollout.actions)
    surrogate_after = (normalised * (after - before).exp()).mean()
    assert surrogate_after > normalised.mean() + 1e-4  # at the acting policy every ratio is 1


def test_bad_ppo_settings_are_named():
    with pytest.raises(ValueError, match="ppo.minibatches must be from 1 to train.num_envs"):
        corridor_trainer("lstm", "train.algorithm=ppo", "ppo.minibatches=7")
    with pytest.raises(ValueError, match="train.algorithm must be one of a2c, ppo"):
        corridor_trainer("lstm", "train.algorithm=trpo")
    with pytest.raises(ValueError, match="model.dropout must be 0 for an agent"):
        corridor_trainer("lstm", "model.dropout=0.1")


def test_greedy_evaluation_takes_the_most_likely_action():
    """A policy that prefers east walks greedily to the junction and stays there: every greedy episode times
    out, where sampling reaches a door in some."""
    trainer = corridor_trainer("none")
    with torch.no_grad():
        trainer.policy.actor.weight.zero_()
        trainer.policy.actor.bias.copy_(torch.tensor([0.0, 1.0, 0.0, 0.0]))  # east, slightly
    env = {"min_length": 3, "max_length": 6, "max_steps": 12}
    results = evaluate(trainer.policy, "corridor", env, episodes=32, seed=7, device=torch.device("cpu"))
    assert results["length_greedy"] == 12 and results["success_greedy"] == 0 and results["return_greedy"] == 0
    assert results["length"] < 12
    assert evaluate(trainer.policy, "corridor", env, episodes=32, seed=7, device=torch.device("cpu")) == results


def test_evaluation_counts_a_tasks_instructions():
    """A policy that always walks north never speaks: every instruction is received and none is carried out,
    failed or spoken wrongly; a uniform policy speaks, and never resolves more instructions than it received."""
    config = config_for("instruction", CONFIGS / "instruction_quick.toml")
    trainer = Trainer("instruction", "none", config, CPU, seed=0)
    with torch.no_grad():
        trainer.policy.actor.weight.zero_()
        trainer.policy.actor.bias.zero_()
        trainer.policy.actor.bias[0] = 1.0  # north, slightly: the greedy policy never speaks
    results = evaluate(trainer.policy, "instruction", config["env"], episodes=16, seed=3, device=torch.device("cpu"))
    received = config["env"]["n_instructions"]
    assert results["instructions_received_greedy"] == received and results["success_greedy"] == 0
    assert results["instructions_right_greedy"] == results["instructions_failed_greedy"] == 0
    assert results["instructions_wrong_greedy"] == 0
    assert results["instructions_wrong"] > 0
    assert results["instructions_right"] + results["instructions_failed"] <= results["instructions_received"]


def test_the_learning_rate_decays_linearly_to_zero_when_asked():
    trainer = corridor_trainer("lstm", "train.lr_decay=true", "train.lr=1e-3", "train.steps=240")
    seen = []
    for _ in range(3):
        trainer.update()
        seen.append(trainer.optimizer.param_groups[0]["lr"])
    assert seen == pytest.approx([1e-3, 1e-3 * (1 - 60 / 240), 1e-3 * (1 - 120 / 240)])
    constant = corridor_trainer("lstm")
    constant.update()
    assert constant.optimizer.param_groups[0]["lr"] == constant.config["train"]["lr"]


def test_the_entropy_cost_decays_linearly_to_zero_when_asked_and_weighs_the_loss():
    """The decayed cost is the one the loss uses: at zero cost, a window's gradients equal a run's whose
    config sets the cost to zero."""
    trainer = corridor_trainer("none", "train.entropy_cost_decay=true", "train.entropy_cost=0.1", "train.steps=240")
    seen = []
    for _ in range(3):
        trainer.update()
        seen.append(trainer.learner.entropy_cost)
    assert seen == pytest.approx([0.1, 0.1 * (1 - 60 / 240), 0.1 * (1 - 120 / 240)])
    after = []
    for overrides in (["train.entropy_cost_decay=true", "train.entropy_cost=0.1"], ["train.entropy_cost=0.0"]):
        trainer = corridor_trainer("none", *overrides, "train.steps=60")  # seeds torch's global generator
        trainer.updates = 1  # past train.steps: a decayed cost is 0
        trainer.update()
        after.append([p.detach().clone() for p in trainer.policy.parameters()])
    for a, b in zip(*after, strict=True):
        assert torch.equal(a, b)


def test_a_small_actor_init_scale_starts_near_the_uniform_policy():
    """The scale multiplies the head the seed would give; everything else in the network is the same."""
    default, small = corridor_trainer("none"), corridor_trainer("none", "agent.actor_init_scale=0.01")
    assert torch.equal(small.policy.actor.weight, default.policy.actor.weight * 0.01)
    assert torch.equal(small.policy.actor.bias, default.policy.actor.bias * 0.01)
    assert torch.equal(small.policy.critic.weight, default.policy.critic.weight)
    spreads = []
    for trainer in (default, small):
        rollout, _ = collect(trainer.policy, trainer.acting_step, trainer.env, trainer.carry, 10, [], trainer.timing)
        logits = rollout.logits.float()  # N x T x A
        spreads.append((logits.max(-1).values - logits.min(-1).values).max().item())
    assert spreads[1] < 0.02 < 0.1 < spreads[0]


def test_an_action_bias_sets_the_initial_policy():
    trainer = corridor_trainer("none", "agent.action_bias=[0.0, 3.0, 0.0, -3.0]")
    assert trainer.policy.actor.bias.tolist() == [0.0, 3.0, 0.0, -3.0]
    rollout, _ = collect(trainer.policy, trainer.acting_step, trainer.env, trainer.carry, 10, [], trainer.timing)
    counts = torch.bincount(rollout.actions.flatten(), minlength=4)
    assert counts[1] > counts[0] + counts[2] > counts[3]  # east mostly, west almost never
    with pytest.raises(ValueError, match=r"agent.action_bias needs one value per action logit \(4\), got 2"):
        corridor_trainer("none", "agent.action_bias=[1.0, 2.0]")
