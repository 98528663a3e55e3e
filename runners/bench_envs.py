"""Environment speed: steps per second of every registered task, reference envs under gymnasium's
SyncVectorEnv against the natively batched torch twin, at several numbers of envs.

    python -m runners.bench_envs                      # N = 64 and 1024, 4 s per task and N, CPU, 1 thread
    python -m runners.bench_envs --num-envs 4096 --device cuda --no-sync

Tasks are found in gymnasium's registry (every id registered by `envs` with a vector entry point),
so a newly registered task is measured without changes here. Actions are uniformly random and
pre-drawn. A steps/s figure counts env steps: batch steps times N. SyncVectorEnv and the twin are
timed in alternating short rounds, so a machine whose load changes affects both alike and their
ratio stays fair.
"""

import argparse
import os
import platform
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

import envs  # noqa: F401  (registers the tasks)

ACTION_BATCHES = 64  # pre-drawn action batches, cycled
ROUNDS = 8  # alternations of SyncVectorEnv and twin per (task, N)


def registered_tasks() -> list[str]:
    """Ids of the tasks that `envs` registers with a batched twin."""
    return sorted(
        spec.id
        for spec in gym.registry.values()
        if spec.vector_entry_point is not None and str(spec.entry_point).startswith("envs.")
    )


class Timer:
    """Steps one vector env in timed rounds, accumulating batch steps and seconds."""

    def __init__(self, step: Callable, actions: list, synchronize: Callable = lambda: None):
        self.step, self.actions, self.synchronize = step, actions, synchronize
        self.steps, self.seconds = 0, 0.0
        for batch in actions[:4]:  # warm-up
            step(batch)

    def run(self, seconds: float) -> None:
        self.synchronize()
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.step(self.actions[(self.steps + steps) % len(self.actions)])
            steps += 1
        self.synchronize()
        self.steps += steps
        self.seconds += time.perf_counter() - start

    def env_steps_per_second(self, num_envs: int) -> float:
        return self.steps * num_envs / self.seconds


def sync_timer(task: str, num_envs: int) -> Timer:
    vector_env = gym.make_vec(task, num_envs=num_envs, vectorization_mode="sync")
    vector_env.reset(seed=0)
    rng = np.random.default_rng(0)
    n_actions = vector_env.single_action_space.n
    return Timer(vector_env.step, [rng.integers(0, n_actions, num_envs) for _ in range(ACTION_BATCHES)])


def twin_timer(task: str, num_envs: int, device: torch.device) -> Timer:
    twin = gym.make_vec(task, num_envs=num_envs, vectorization_mode="vector_entry_point", device=device)
    twin.reset(seed=0)
    generator = torch.Generator(device).manual_seed(0)
    n_actions = int(twin.single_action_space.n)
    shape = (ACTION_BATCHES, num_envs)
    actions = list(torch.randint(0, n_actions, shape, generator=generator, device=device))
    return Timer(twin.step, actions, torch.cuda.synchronize if device.type == "cuda" else lambda: None)


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with open("/proc/cpuinfo") as cpuinfo:
        names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    return f"{names[0] if names else platform.processor()}, {os.cpu_count()} cores"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=None, help="task ids (default: every registered task)")
    parser.add_argument("--num-envs", nargs="+", type=int, default=[64, 1024], help="values of N (default: 64 1024)")
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per task and N (default: 4)")
    parser.add_argument("--device", default="cpu", help="device of the twins: cpu or cuda[:k] (default: cpu)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default: 1; the twins' ops are small, and on a busy machine more threads "
        "mostly wait for each other)",
    )
    parser.add_argument("--no-sync", action="store_true", help="time the twins only (for large N on a GPU)")
    args = parser.parse_args()
    tasks = registered_tasks()
    for task in args.tasks or []:
        if task not in tasks:
            parser.error(f"--tasks: unknown task {task!r}; registered tasks: {', '.join(tasks)}")
    args.tasks = args.tasks or tasks
    if any(n < 1 for n in args.num_envs):
        parser.error("--num-envs: every N must be a positive integer")
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    try:
        args.device = torch.device(args.device)
    except RuntimeError as error:
        parser.error(f"--device: {error}")
    if args.device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device: CUDA is not available on this machine; use cpu")
    if args.threads < 1:
        parser.error("--threads must be a positive integer")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    rows, load_before = [], os.getloadavg()[0]
    jobs = [(task, n) for task in args.tasks for n in args.num_envs]
    for task, n in tqdm(jobs, desc="measuring", unit="task x N"):
        twin = twin_timer(task, n, args.device)
        sync = None if args.no_sync else sync_timer(task, n)
        share = args.seconds / ROUNDS / (1 if sync is None else 2)
        for _ in range(ROUNDS):
            twin.run(share)
            if sync is not None:
                sync.run(share)
        rows.append((task, n, sync and sync.env_steps_per_second(n), twin.env_steps_per_second(n)))

    print(
        f"\nmachine: {machine(args.device)}; torch threads: {torch.get_num_threads()}; "
        f"load average before/after: {load_before:.1f}/{os.getloadavg()[0]:.1f}"
    )
    print("| task | N | SyncVectorEnv steps/s | batched twin steps/s | twin / Sync |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for task, n, sync, twin in rows:
        sync_text = "-" if sync is None else f"{sync:,.0f}"
        ratio = "-" if sync is None else f"{twin / sync:,.0f}x"
        print(f"| {task} | {n} | {sync_text} | {twin:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
