"""Environment speed: steps per second of every registered task, reference envs under gymnasium's
SyncVectorEnv against the natively batched torch twin, at several numbers of envs.

    python -m runners.bench_envs                      # N = 64 and 1024, 3 s per measurement, CPU
    python -m runners.bench_envs --num-envs 4096 --device cuda --seconds 5

Tasks are found in gymnasium's registry (every id registered by `envs` with a vector entry point),
so a newly registered task is measured without changes here. Actions are uniformly random. A
steps/s figure counts env steps: batch steps times N.
"""

import argparse
import os
import platform
import time

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

import envs  # noqa: F401  (registers the tasks)

ACTION_BATCHES = 64  # actions are pre-drawn and cycled, so drawing them is not timed


def registered_tasks() -> list[str]:
    """Ids of the tasks that `envs` registers with a batched twin."""
    return sorted(
        spec.id
        for spec in gym.registry.values()
        if spec.vector_entry_point is not None and str(spec.entry_point).startswith("envs.")
    )


def time_steps(step, actions: list, seconds: float, synchronize=lambda: None) -> float:
    """Batch steps per second of `step` over about `seconds`, after a short warm-up."""
    for batch in actions[:4]:
        step(batch)
    synchronize()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step(actions[steps % len(actions)])
        steps += 1
    synchronize()
    return steps / (time.perf_counter() - start)


def bench_sync(task: str, num_envs: int, seconds: float) -> float:
    envs_ = gym.make_vec(task, num_envs=num_envs, vectorization_mode="sync")
    envs_.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = [rng.integers(0, envs_.single_action_space.n, num_envs) for _ in range(ACTION_BATCHES)]
    rate = time_steps(envs_.step, actions, seconds) * num_envs
    envs_.close()
    return rate


def bench_twin(task: str, num_envs: int, seconds: float, device: torch.device) -> float:
    twin = gym.make_vec(task, num_envs=num_envs, vectorization_mode="vector_entry_point", device=device)
    twin.reset(seed=0)
    generator = torch.Generator(device).manual_seed(0)
    n_actions = int(twin.single_action_space.n)
    actions = list(
        torch.randint(0, n_actions, (ACTION_BATCHES, num_envs), generator=generator, device=device)
    )
    synchronize = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    return time_steps(twin.step, actions, seconds, synchronize) * num_envs


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    )
    return f"{model}, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=None, help="task ids (default: every registered task)")
    parser.add_argument(
        "--num-envs", nargs="+", type=int, default=[64, 1024], help="values of N (default: 64 1024)"
    )
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="duration of each measurement (default: 3)"
    )
    parser.add_argument("--device", default="cpu", help="device of the twins: cpu or cuda[:k] (default: cpu)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--no-sync", action="store_true", help="skip SyncVectorEnv (for large N on a GPU)")
    args = parser.parse_args()

    tasks = registered_tasks()
    for task in args.tasks or []:
        if task not in tasks:
            parser.error(f"--tasks: unknown task {task!r}; registered tasks: {', '.join(tasks)}")
    if any(n < 1 for n in args.num_envs):
        parser.error("--num-envs: every N must be a positive integer")
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    try:
        device = torch.device(args.device)
    except RuntimeError as error:
        parser.error(f"--device: {error}")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device: CUDA is not available on this machine; use cpu")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be a positive integer")
        torch.set_num_threads(args.threads)

    rows, load_before = [], os.getloadavg()[0]
    jobs = [(task, n) for task in (args.tasks or tasks) for n in args.num_envs]
    for task, n in tqdm(jobs, desc="measuring", unit="task x N"):
        sync = None if args.no_sync else bench_sync(task, n, args.seconds)
        twin = bench_twin(task, n, args.seconds, device)
        rows.append((task, n, sync, twin))

    print(
        f"\nmachine: {machine(device)}; torch threads: {torch.get_num_threads()}; "
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
