"""Plot a training run's main TensorBoard curves into one PNG (for READMEs and reports).

python runners/plot_curves.py runs/<run> --out docs/images/corridor_curves.png
python runners/plot_curves.py runs/<expire_span run> runs/<none run> --out compare.png  # several runs, one figure
python runners/plot_curves.py runs/<run> --tags curriculum/stage episode/instruction_accuracy eval/success_greedy
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backend_bases import FigureCanvasBase  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from training.paths import PathError, check_writable_file  # noqa: E402

PANELS = {
    "episode/success": "success rate",
    "episode/return": "episode return",
    "episode/length": "episode length",
    "memory/size_layer0": "memory size, layer 0 (steps)",
}
TITLES = {  # panel titles of other scalars asked for with --tags; any other tag is its own title
    **PANELS,
    "curriculum/stage": "curriculum stage (0: the first)",
    "episode/instruction_accuracy": "instructions right / attempted",
    "eval/success": "held-out success (sampled)",
    "eval/success_greedy": "held-out success (greedy)",
}


def read_scalars(run_dir: Path, tags: Iterable[str] = PANELS) -> dict[str, tuple[list[int], list[float]]]:
    """Steps and values of each of ``tags`` the run logged."""
    return {tag: (steps, values) for tag, (steps, values, _) in read_events(run_dir, tags).items()}


def read_events(run_dir: Path, tags: Iterable[str]) -> dict[str, tuple[list[int], list[float], list[float]]]:
    """Steps, values and wall times of each of ``tags`` the run logged."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    available = set(events.Tags()["scalars"])
    found = {}
    for tag in set(tags) & available:
        scalars = events.Scalars(tag)
        found[tag] = ([e.step for e in scalars], [e.value for e in scalars], [e.wall_time for e in scalars])
    return found


def check_runs(parser: argparse.ArgumentParser, runs: list[Path]) -> None:
    """Stop with one line when a run directory holds no TensorBoard event files."""
    for run in runs:
        if not list(run.glob("events.out.tfevents.*")):
            parser.error(f"{str(run)!r} holds no TensorBoard event files")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="plot_curves.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", type=Path, help="run directories holding TensorBoard event files")
    parser.add_argument("--labels", nargs="+", help="legend names, one per run (default: the run directory names)")
    parser.add_argument("--out", type=Path, default=Path("curves.png"), help="PNG to write (default curves.png)")
    parser.add_argument(
        "--tags", nargs="+", help=f"scalars to plot, a panel each (default: {' '.join(PANELS)}, those logged)"
    )
    args = parser.parse_args(argv)
    labels = args.labels or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        parser.error(f"--labels needs one name per run: {len(args.runs)} runs, {len(labels)} labels")
    formats = FigureCanvasBase.get_supported_filetypes()  # what savefig can write, by extension
    if args.out.suffix.lstrip(".").lower() not in formats:
        parser.error(f"--out must end in one of {', '.join('.' + f for f in sorted(formats))}, got {str(args.out)!r}")
    try:
        check_writable_file(args.out, "--out")
    except PathError as error:
        parser.error(str(error))
    check_runs(parser, args.runs)
    tags = args.tags or list(PANELS)
    runs_scalars = [read_scalars(run, tags) for run in args.runs]
    missing = [tag for tag in tags if not any(tag in scalars for scalars in runs_scalars)]
    if missing and args.tags:  # asked for by name; a default panel a model does not log stays empty
        parser.error(f"no run logged {', '.join(missing)} (`tensorboard --logdir RUN` lists what they logged)")
    figure, axes = plt.subplots(1, len(tags), figsize=(4 * len(tags), 3.2), squeeze=False)
    for scalars, label in zip(runs_scalars, labels, strict=True):
        for axis, tag in zip(axes[0], tags, strict=True):
            if tag in scalars:
                steps, values = scalars[tag]
                axis.plot(steps, values, label=label)
            axis.set_title(TITLES.get(tag, tag))
            axis.set_xlabel("agent steps")
            axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
