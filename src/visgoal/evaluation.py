"""The evaluation protocol, shared by every method.

Each environment has a fixed, seeded set of (initial state, goal) pairs: episode i
starts from `env.reset(seed=episode_seed(eval_seed, i))`, so every method and every
seed meets the same goals. Policies act deterministically (no exploration noise),
through their observation view (agents/views.py). Success is the final step's: the goal
reached and held. `reached` (the goal's threshold crossed at any step after the first action)
is a diagnostic beside it, not a second protocol: a policy that finds the goal but passes
through it has it, one that never finds the goal has neither. The results: one row per (seed,
episode) with the true distances (`COLUMNS`), their means per seed (`summary`), and the
JSON summary over seeds (`write_summary`: what `dvc metrics show` reads), mean and spread as
`over_seeds` gives them, the report's too. The stage that
writes them is `visgoal.stages.evaluate`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from visgoal.files import atomic_output

COLUMNS = ("env", "method", "seed", "episode", "final_distance", "success", "reached", "min_distance",
           "latent_distance", "return", "steps")


def episode_seed(eval_seed: int, episode: int) -> int:
    """The reset seed of evaluation episode `episode`: disjoint blocks per eval_seed."""
    return eval_seed * 100003 + episode


def run_episode(env, view, policy, seed: int, frames: bool = False, watch=None) -> dict:
    """One deterministic episode from the fixed reset `seed`. With frames, the env must render images.
    `watch(step, action)`, if given, sees the reset (action None) and every step after its action: a
    diagnostic's window on the protocol's own episodes (benchmarks/episode_speeds.py)."""
    step = env.reset(seed=seed)
    view.reset()
    policy.reset(seed)
    obs, achieved = view.observe(step)
    goal = view.goal(step)
    first = step.image if frames else None
    total, steps, min_distance, reached = 0.0, 0, step.distance, False
    if watch:
        watch(step, None)
    while not (step.terminated or step.truncated):
        action = policy.env_action(policy(obs, goal))
        step = env.step(action)
        if watch:
            watch(step, action)
        obs, achieved = view.observe(step)
        total += view.reward(step)
        steps += 1
        min_distance = min(min_distance, step.distance)
        reached = reached or bool(step.success)
    result = {"final_distance": step.distance, "success": bool(step.success), "reached": reached,
              "min_distance": min_distance, "latent_distance": view.latent_distance(achieved, goal),
              "return": total, "steps": steps}
    if frames:
        result["frames"] = [first, step.image, step.goal_image]
    return result


def evaluate_policy(env, view, policy, episodes: int, eval_seed: int) -> list[dict]:
    return [run_episode(env, view, policy, episode_seed(eval_seed, i)) for i in range(episodes)]


def summary(results: list[dict]) -> dict[str, float]:
    """Means over episodes; latent_distance only for image policies."""
    out = {"success_rate": float(np.mean([r["success"] for r in results])),
           "reached_rate": float(np.mean([r["reached"] for r in results])),
           "final_distance": float(np.mean([r["final_distance"] for r in results])),
           "return": float(np.mean([r["return"] for r in results]))}
    latent = [r["latent_distance"] for r in results if r["latent_distance"] != ""]
    if latent:
        out["latent_distance"] = float(np.mean(latent))
    return out


def over_seeds(values) -> tuple[float, float]:
    """Mean and std over seeds of each seed's mean over episodes: every "± std over seeds" of the
    pipeline (`<method>_eval.json`, the report's summary.csv and summary.md, final.png's error bars).
    The sample std (ddof=1), the seeds being a sample of the seeds one could run; one seed has no
    spread: NaN (null in the JSON, an empty cell in the CSV, no ± in the table)."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def write_summary(path: Path, per_seed: dict[int, dict]) -> Path:
    """The eval summary as JSON, what `dvc metrics show` and `dvc exp show` compare: success rate,
    reached rate and final distance, mean and std over seeds (`over_seeds`; null for one seed)
    (each seed's own numbers are in the CSV and in its MLflow run; the episodes and seeds are
    parameters)."""
    data = {}
    for key in ("success_rate", "reached_rate", "final_distance"):
        mean, std = over_seeds([s[key] for s in per_seed.values()])
        data.update({key: mean, f"{key}_std": std if np.isfinite(std) else None})  # JSON has no NaN
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path
