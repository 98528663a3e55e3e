#!/usr/bin/env bash
# Every check that needs a GPU, in one run of under 8 minutes on a lent GPU machine; figures go to $OUT.
#
# The GPU machine has torch but not gymnasium or minigrid, and reaches no package index: carry their wheels.
# Here, once (the folder is git-ignored through .git/info/exclude):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 --platform any -d .whl gymnasium minigrid farama-notifications pygame
# Then, with the device tool: run "bash scripts/gpu_check.sh" with carry [".whl"] and timeout_s 540.
set -uo pipefail
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:.
fi
export PYTHONPATH=${PYTHONPATH:-.} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/machine.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/machine.txt"

# 1. Every CUDA test (the ones CI skips), then the CPU suite's agent tests on this torch (about 2 minutes).
timeout 180 python3 -m pytest -q -x -k "cuda or graph" tests 2>&1 | tail -15 | tee "$OUT/cuda_tests.txt"

# 2. Throughput at 1024 envs: A2C and PPO side by side, per model (about 1 minute).
timeout 120 python3 -m runners.bench_agent --device cuda --config configs/corridor_gpu.toml --num-envs 1024 \
    --models expire_span transformer_xl lstm --algorithms a2c ppo --updates 5 --warmup 2 2>&1 \
    | tail -8 | tee "$OUT/bench_agent.txt"

# 2b. Throughput of the paper-scale Instruction GPU preset (4 rooms, delay 300, 1024 envs), PPO (under a minute).
timeout 90 python3 -m runners.bench_agent --env instruction --device cuda --config configs/instruction_gpu.toml \
    --models expire_span transformer_xl --algorithms ppo --updates 3 --warmup 1 2>&1 \
    | tail -5 | tee "$OUT/bench_instruction_gpu.txt"

# 3. Learning: the GPU Corridor preset (lengths U(3, 200), curriculum) for 3.5 minutes, then its held-out figures.
timeout 210 python3 runners/train_agent.py --env corridor --config configs/corridor_gpu.toml --device cuda \
    --logdir "$OUT/runs" > "$OUT/corridor_gpu.log" 2>&1
python3 runners/summarize_runs.py "$OUT"/runs/* | tee "$OUT/corridor_gpu_summary.md"
run=$(ls -d "$OUT"/runs/* | head -1)
timeout 60 python3 runners/train_agent.py --resume "$run/checkpoint.pt" --eval 500 --device cuda \
    | tee -a "$OUT/corridor_gpu_summary.md"
rm -rf "$OUT/runs"  # event files and GIFs stay behind: only 8 files come back
