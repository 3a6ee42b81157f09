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
    """Frames per second of gymnasium's renderer and of visgoal's; where an environment's spec
    draws fewer triangles (`render_detail`), also of visgoal's at full detail, timed on the same
    states in turn, with how much the two pictures differ (mean absolute difference per pixel
    channel in 0-255, and the share of pixels where a channel differs by more than 8)."""
    import gymnasium as gym

    from visgoal.envs import load_spec, make_env
    from visgoal.envs.render import FastRenderer
    from visgoal.files import atomic_output

    rows = []
    print(f"{'env':<18} {'gymnasium fps':>14} {'full detail fps':>16} {'visgoal fps':>12} {'speed-up':>9} "
          f"{'detail mean|d|':>15} {'px > 8':>7}   ({frames} frames, {image_size}x{image_size})")
    for name in envs:
        spec = load_spec(name)
        default = gym.make(spec.gym_id, render_mode="rgb_array", width=image_size, height=image_size, **spec.make_kwargs)
        default.reset(seed=0)
        gym_fps = _fps(default.render, lambda: default.step(default.action_space.sample()), frames)
        default.close()
        row = {"env": name, "gymnasium_fps": gym_fps, "full_detail_fps": float("nan")}
        with make_env(name, image_size=image_size) as env:
            env.reset(seed=0)
            if spec.render_detail:
                full = FastRenderer(env.model, env.image_size, env.image_size, spec.camera,
                                    decor=env.renderer._decor, **spec.antialias)
                timed = _fps_side_by_side({"full": lambda: full.render(env.data), "visgoal": env.render},
                                          lambda: env.step(env.action_space.sample()), frames)
                full.close()
                row["full_detail_fps"], ours_fps = timed["full"][0], timed["visgoal"][0]
                difference = np.abs(np.stack(timed["full"][1]).astype(np.int16) - np.stack(timed["visgoal"][1]))
                row["detail_mean_abs_diff"] = float(difference.mean())
                row["detail_pixels_over_8"] = float((difference.max(axis=-1) > 8).mean())
            else:
                ours_fps = _fps(env.render, lambda: env.step(env.action_space.sample()), frames)
        row.update(visgoal_fps=ours_fps, speedup=ours_fps / gym_fps)
        rows.append(row)
        detail = (f"{row['full_detail_fps']:>16.1f}" if spec.render_detail else f"{'':>16}")
        difference = (f"{row['detail_mean_abs_diff']:>15.3f} {row['detail_pixels_over_8']:>7.2%}" if spec.render_detail
                      else f"{'':>15} {'':>7}")
        print(f"{name:<18} {gym_fps:>14.1f} {detail} {ours_fps:>12.1f} {ours_fps / gym_fps:>8.1f}x {difference}", flush=True)
    if out is not None:
        import pandas as pd

        with atomic_output(out) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.4g")
    return rows


def _fps_side_by_side(renders: dict, step, frames: int) -> dict:
    """{name: (frames per second, pictures)} of each render in `renders`, all on the same states:
    each state rendered by each in turn (untimed steps between), so that a busy machine slows all
    of them alike."""
    for render in renders.values():
        render()  # warm-up
    totals = dict.fromkeys(renders, 0.0)
    pictures: dict = {name: [] for name in renders}
    for _ in range(frames):
        step()
        for name, render in renders.items():
            start = time.perf_counter()
            picture = render()
            totals[name] += time.perf_counter() - start
            pictures[name].append(picture)
    return {name: (frames / totals[name], pictures[name]) for name in renders}
