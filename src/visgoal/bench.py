"""Benchmarks that print numbers: `python -m visgoal bench-render`."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def _fps(render, step, frames: int) -> float:
    """Frames per second of `render`, stepping the simulation between frames (untimed)."""
    render()  # warm-up: first frame uploads textures
    total = 0.0
    for _ in range(frames):
        step()
        start = time.perf_counter()
        render()
        total += time.perf_counter() - start
    return frames / total


def bench_render(envs: list[str], frames: int, image_size: int, out: Path | None = None) -> list[dict]:
    import gymnasium as gym

    from visgoal.envs import load_spec, make_env
    from visgoal.files import atomic_output

    rows = []
    print(f"{'env':<18} {'gymnasium fps':>14} {'visgoal fps':>12} {'speed-up':>9}   ({frames} frames, {image_size}x{image_size})")
    for name in envs:
        spec = load_spec(name)
        default = gym.make(spec.gym_id, render_mode="rgb_array", width=image_size, height=image_size, **spec.make_kwargs)
        default.reset(seed=0)
        gym_fps = _fps(default.render, lambda: default.step(default.action_space.sample()), frames)
        default.close()
        with make_env(name, image_size=image_size) as env:
            env.reset(seed=0)
            ours_fps = _fps(env.render, lambda: env.step(env.action_space.sample()), frames)
        rows.append({"env": name, "gymnasium_fps": gym_fps, "visgoal_fps": ours_fps, "speedup": ours_fps / gym_fps})
        print(f"{name:<18} {gym_fps:>14.1f} {ours_fps:>12.1f} {ours_fps / gym_fps:>8.1f}x", flush=True)
    if out is not None:
        import pandas as pd

        with atomic_output(out) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.2f")
    return rows
