"""Tabulate training runs from their TensorBoard logs: steps and minutes to a success level, final evaluation.

python runners/summarize_runs.py runs/corridor-*            # one markdown row per run
python runners/summarize_runs.py runs/portal-* --level 0.9  # the success level the "to" columns measure

Per run: the agent steps and wall-clock minutes (from the first logged step) until the training
success first reaches ``--level``, the first held-out evaluation whose greedy success reaches it,
and the last held-out evaluation, sampled and greedy. A dash: never reached (or not logged).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from runners.plot_curves import check_runs, read_events
from training.checkpoint import CheckpointError, load_checkpoint

TAGS = ("episode/success", "eval/success", "eval/success_greedy")
COLUMNS = (
    "run", "algorithm", "seed", "steps", "train: steps to level", "train: minutes to level",
    "greedy eval: steps to level", "last eval (sampled)", "last eval (greedy)",
)  # fmt: skip


def first_reaching(steps: list[int], values: list[float], level: float) -> int | None:
    """Index of the first value at or above ``level``, or None. TensorBoard keeps scalars in float32, so a
    logged 0.9 reads back as 0.89999998: the level is compared in float32 too."""
    return next((i for i, value in enumerate(values) if np.float32(value) >= np.float32(level)), None)


def summarize(run_dir: Path, level: float) -> list[str]:
    """One table row for the run in ``run_dir``."""
    events = read_events(run_dir, TAGS)
    row = [run_dir.name, "-", "-", "-"]
    try:
        payload = load_checkpoint(run_dir / "checkpoint.pt")
        row[1:4] = [payload["config"]["train"]["algorithm"], str(payload["seed"]), f"{payload['global_step']:,}"]
    except (CheckpointError, FileNotFoundError, KeyError):  # CheckpointError: e.g. an older format
        pass  # the logs still say how the run learned
    cells = ["-", "-", "-"]
    if "episode/success" in events:
        steps, values, times = events["episode/success"]
        index = first_reaching(steps, values, level)
        if index is not None:
            cells[0:2] = [f"{steps[index]:,}", f"{(times[index] - times[0]) / 60:.1f}"]
    if "eval/success_greedy" in events:
        steps, values, _ = events["eval/success_greedy"]
        index = first_reaching(steps, values, level)
        cells[2] = f"{steps[index]:,}" if index is not None else "-"
    last = [f"{events[tag][1][-1]:.0%}" if tag in events else "-" for tag in ("eval/success", "eval/success_greedy")]
    return row + cells + last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="summarize_runs.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", type=Path, help="run directories holding TensorBoard event files")
    parser.add_argument("--level", type=float, default=0.9, help="success level the 'to level' columns measure")
    args = parser.parse_args(argv)
    if not 0 < args.level <= 1:
        parser.error(f"--level must be in (0, 1], got {args.level}")
    check_runs(parser, args.runs)
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + " --- |" * len(COLUMNS))
    for run in args.runs:
        print("| " + " | ".join(summarize(run, args.level)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
