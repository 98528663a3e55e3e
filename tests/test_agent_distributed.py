"""Data-parallel training under torchrun: two CPU processes (gloo), each with its own envs, keep equal parameters,
on a task's batched twin and on a gymnasium env through make_vec."""

import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tests.two_ranks import worker_errors

ROOT = Path(__file__).resolve().parent.parent
CRASHED_RANK = re.compile(r"exitcode\s*:\s*-(6|11) ")  # torchrun's summary of a rank killed by SIGABRT or SIGSEGV

WORKER = """
import torch
import torch.distributed as dist
from torch.nn.utils import parameters_to_vector

from agents.trainer import Trainer
from training.config import resolve
from training.distributed import close_world, init_world

torch.set_num_threads(1)
world = init_world("cpu")
overrides = ["train.num_envs=3", "ppo.minibatches=3", "train.unroll=6", "model.d_model=16", "model.n_heads=2",
             "train.compile_acting=false", *{extra}]
trainer = Trainer({env!r}, "expire_span", resolve({preset!r}, overrides=overrides), world, 0)
initial = parameters_to_vector(trainer.policy.parameters()).detach().clone()
for _ in range(3):
    trainer.update()
params = parameters_to_vector(trainer.policy.parameters()).detach()
all_params = [torch.empty_like(params) for _ in range(2)]
all_obs = [torch.empty_like(trainer.carry.obs) for _ in range(2)]
dist.all_gather(all_params, params)
dist.all_gather(all_obs, trainer.carry.obs)
payload = trainer.checkpoint_payload()
if world.is_main:
    assert torch.equal(all_params[0], all_params[1]), "ranks' parameters differ"
    assert not torch.equal(params, initial), "training did not change the parameters"
    assert not torch.equal(all_obs[0], all_obs[1]), "ranks should act in envs of their own"
    assert len(payload["ranks"]) == 2 and payload["global_step"] == 3 * 3 * 6 * 2
    print("ranks agree")
close_world(world)
"""


@pytest.mark.parametrize(
    ("env", "preset", "extra"),
    [
        ("corridor", "configs/corridor_quick.toml", ["env.max_length=6"]),
        ("CartPole-v1", "configs/default_quick.toml", []),
    ],
)
def test_two_ranks_keep_identical_parameters(env, preset, extra):
    worker = WORKER.format(env=env, preset=preset, extra=extra)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["--no-python", sys.executable, "-c", worker]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if result.returncode and CRASHED_RANK.search(result.stderr):
        # Once in CI (2026-12-01) a rank died of SIGABRT inside gloo, never reproduced here in 59 runs; a real
        # defect fails again (an assertion exits with 1, not a signal), a transport hiccup does not.
        warnings.warn(f"a rank crashed, running the two ranks again:\n{worker_errors(result.stderr)}", stacklevel=1)
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, worker_errors(result.stderr)
    assert "ranks agree" in result.stdout
