"""Rendered rollouts: the env's frame (minigrid's renderer for the tasks, any env's ``rgb_array``) above a strip of
what each memory layer still keeps. An env that cannot render shows its observation as text instead.

The strip has one row per layer and one column per past step of the episode, the newest at the
right. A step is kept while its remaining span is positive: for Expire-Span, e_i - (t - i) + R > 0
(the soft mask's ramp R keeps it partly visible after e_i runs out); for models that report a span
per position (a cache length) the same rule with R = 0. Brighter green is more span left; dark red
is a step the layer has dropped; black is before the episode began.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np
import torch
from PIL import Image, ImageDraw

from agents.acting import act, sample_actions
from agents.envs import make_reference_env
from agents.policy import Policy
from agents.spaces import batch_of_one, to_tensor, without_text

CELL_WIDTH = 8  # pixels per past step in the strip
ROW_HEIGHT = 14  # pixels per layer
HEADER = 16  # pixels for the strip's caption
MIN_WIDTH = 512
KEPT_DIM, KEPT_BRIGHT = np.array([20, 90, 40]), np.array([80, 255, 120])
DROPPED = np.array([90, 30, 30])
ANIMATION_SUFFIXES = (".gif", ".mp4")
TEXT_FRAME = (96, 384)  # height, width of the frame that shows an unrenderable env's observation as text
TEXT_LINE, TEXT_CHARS = 60, 360  # characters per line and in all


def frame_of(env, obs: object) -> np.ndarray:
    """The env's rgb_array frame, or its observation written out where it renders nothing."""
    frame = env.render() if env.render_mode == "rgb_array" else None
    if frame is not None:
        return np.asarray(frame, dtype=np.uint8)
    image = Image.new("RGB", TEXT_FRAME[::-1])
    text = str(obs)[:TEXT_CHARS]
    lines = [text[i : i + TEXT_LINE] for i in range(0, len(text), TEXT_LINE)]
    ImageDraw.Draw(image).multiline_text((4, 4), "\n".join(["observation:", *lines]), fill=(230, 230, 230))
    return np.asarray(image)


def remaining_spans(spans: np.ndarray, ramp: float) -> np.ndarray:
    """spans: n_layers x t (span of each step of the episode so far) -> remaining span at the next step, same shape."""
    ages = spans.shape[1] - np.arange(spans.shape[1])  # t: how many steps ago each position was written
    return spans - ages + ramp


def draw_strip(remaining: np.ndarray | None, width: int, caption: str) -> np.ndarray:
    """The memory strip as an H x width x 3 uint8 image; ``remaining`` n_layers x t, or None (no spans)."""
    n_layers = 1 if remaining is None else remaining.shape[0]
    strip = np.zeros((HEADER + n_layers * ROW_HEIGHT, width, 3), dtype=np.uint8)
    if remaining is not None and remaining.shape[1] > 0:
        shown = remaining[:, -(width // CELL_WIDTH) :]  # n_layers x columns, newest last
        scale = max(float(shown.max()), 1.0)
        fraction = np.clip(shown / scale, 0.0, 1.0)[..., None]  # n_layers x columns x 1
        colours = np.where(shown[..., None] > 0, KEPT_DIM + fraction * (KEPT_BRIGHT - KEPT_DIM), DROPPED)
        cells = np.repeat(np.repeat(colours.astype(np.uint8), ROW_HEIGHT, axis=0), CELL_WIDTH, axis=1)
        cells[ROW_HEIGHT - 1 :: ROW_HEIGHT] = 0  # a dark line between layers
        strip[HEADER:, width - cells.shape[1] :] = cells
    image = Image.fromarray(strip)
    ImageDraw.Draw(image).text((4, 2), caption, fill=(230, 230, 230))
    return np.asarray(image)


def compose(grid: np.ndarray, strip: np.ndarray, width: int) -> np.ndarray:
    """The grid image top-left on a black canvas of ``width``, the strip below it."""
    canvas = np.zeros((grid.shape[0], width, 3), dtype=np.uint8)
    canvas[:, : grid.shape[1]] = grid
    return np.concatenate([canvas, strip], axis=0)


@torch.no_grad()
def play_episodes(policy: Policy, env_name: str, env_config: dict[str, Any], episodes: int, seed: int) -> np.ndarray:
    """Play ``episodes`` episodes of the reference env (batch of one) and return the frames, F x H x W x 3 uint8."""
    env = make_reference_env(env_name, render_mode="rgb_array", **env_config)
    space = without_text(env.observation_space)
    device = next(policy.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    ramp = float(getattr(policy.memory, "ramp", 0))
    was_training = policy.training
    policy.eval()
    pictures = []  # (grid image, remaining spans or None, caption) per frame
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        state = policy.initial_state(1, device)
        first = torch.ones(1, dtype=torch.bool, device=device)
        spans, total, done, t = [], 0.0, False, 0
        pictures.append((frame_of(env, obs), None, f"episode {episode + 1}, step 0"))
        while not done:
            obs_tensor = to_tensor(batch_of_one(obs), space, device)  # 1 x observation
            logits, _, state, record = act(policy, obs_tensor, state, first)
            if record.spans is not None:
                spans.append(record.spans[:, 0, 0].float().cpu().numpy())  # n_layers
            action = sample_actions(logits, generator, policy.action_splits)[0].cpu().numpy()  # () or K
            start = getattr(env.action_space, "start", 0)  # gymnasium's actions may be counted from a start
            env_action = int(action + start) if action.ndim == 0 else action + start
            obs, reward, terminated, truncated, _ = env.step(env_action)
            first = torch.zeros_like(first)
            total, done, t = total + float(reward), terminated or truncated, t + 1
            remaining = remaining_spans(np.stack(spans, axis=1), ramp) if spans else None
            pictures.append((frame_of(env, obs), remaining, f"episode {episode + 1}, step {t}, return {total:.2f}"))
    env.close()
    policy.train(was_training)
    width = max(MIN_WIDTH, max(grid.shape[1] for grid, _, _ in pictures))
    if any(remaining is not None for _, remaining, _ in pictures):  # the model reports spans: step 0 keeps nothing
        empty = np.zeros((policy.memory.n_layers, 0))
        pictures = [(grid, empty if remaining is None else remaining, caption) for grid, remaining, caption in pictures]
    frames = [
        compose(grid, draw_strip(remaining, width, caption + memory_caption(remaining)), width)
        for grid, remaining, caption in pictures
    ]
    height = max(frame.shape[0] for frame in frames)
    return np.stack([np.pad(frame, ((0, height - frame.shape[0]), (0, 0), (0, 0))) for frame in frames])


def memory_caption(remaining: np.ndarray | None) -> str:
    if remaining is None:
        return "  | memory: no per-step spans reported"
    kept = (remaining > 0).sum(axis=1)  # n_layers
    return "  | steps kept per layer: " + ", ".join(str(int(k)) for k in kept)


def check_animation_path(path: Path) -> None:
    """A ValueError unless ``path`` ends in .gif, or .mp4 with a video writer installed."""
    if path.suffix not in ANIMATION_SUFFIXES:
        raise ValueError(f"--out must end in one of {', '.join(ANIMATION_SUFFIXES)}, got {str(path)!r}")
    if path.suffix == ".mp4" and not any(importlib.util.find_spec(m) for m in ("imageio_ffmpeg", "av")):
        raise ValueError("writing .mp4 needs imageio-ffmpeg or av, and neither is installed; use a .gif")


def write_animation(frames: np.ndarray, path: Path, fps: int = 8) -> None:
    check_animation_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gif":
        imageio.mimsave(path, list(frames), duration=1000 / fps, loop=0)
    else:
        imageio.mimsave(path, list(frames), fps=fps)
