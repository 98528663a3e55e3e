"""Train the sequence runner on two torchrun ranks and return each rank's final weights (for the DDP tests)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = textwrap.dedent("""
    import sys
    import torch
    from runners import train_lm
    from training.distributed import close_world, init_world

    args = train_lm.parse_args(sys.argv[1:])
    world = init_world("cpu")
    model, _ = train_lm.train(args, train_lm.resolve_config(args), world)
    torch.save(model.state_dict(), args.logdir / f"rank{world.rank}.pt")
    close_world(world)
""")


def train_lm_on_two_ranks(tmp_path: Path, args: list[str]) -> tuple[dict, dict]:
    """Runs ``train_lm`` with ``args`` (whose --logdir is ``tmp_path / "run"``) under a 2-process torchrun."""
    script = tmp_path / "run_ranks.py"
    script.write_text(SCRIPT)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command + args, cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, worker_errors(result.stderr)
    return tuple(torch.load(tmp_path / "run" / f"rank{r}.pt") for r in (0, 1))


def worker_errors(stderr: str) -> str:
    """The ranks' own messages come before torchrun's long summary; keep both ends."""
    return stderr if len(stderr) <= 6000 else stderr[:4000] + "\n[...]\n" + stderr[-2000:]
