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


SEED_BLOCK = 100003  # reset seeds per eval_seed (and per demos.seed): blocks that do not overlap
DEMO_SEED_OFFSET = 1_000_000_000  # demonstrations reset above every evaluation block below it


def episode_seed(eval_seed: int, episode: int) -> int:
    """The reset seed of evaluation episode `episode`: disjoint blocks per eval_seed."""
    return eval_seed * SEED_BLOCK + episode


def demo_seed(seed: int, episode: int) -> int:
    """The reset seed of demonstration `episode` recorded with `demos.seed` = `seed`: a block of its own
    above the offset, DEMO_SEED_OFFSET + seed * 100003 + episode, away from the protocol's episodes
    (eval seed 0), the validation seed's (1) and the dataset's reset (`dataset.seed`)."""
    return DEMO_SEED_OFFSET + seed * SEED_BLOCK + episode


def demo_seed_clash(demos: dict, evaluate: dict, dataset: dict) -> str | None:
    """Why the demonstrations' reset seeds (params' `demos` section) could meet the protocol's (the
    eval seeds 0, 1 and `evaluate.eval_seed`, `evaluate.episodes` each) or the dataset's
    (`dataset.seed`), in one line with the fix; None when they cannot."""
    first, last = demo_seed(demos["seed"], 0), demo_seed(demos["seed"], demos["episodes"] - 1)
    for eval_seed in sorted({0, 1, evaluate["eval_seed"]}):
        low, high = episode_seed(eval_seed, 0), episode_seed(eval_seed, evaluate["episodes"] - 1)
        if low <= last and first <= high:
            return (f"the demonstrations' reset seeds {first}..{last} (demos.seed={demos['seed']}) meet eval seed "
                    f"{eval_seed}'s {low}..{high}: demonstrations must not be the protocol's episodes; choose "
                    f"another demos.seed or evaluate.eval_seed")
    if first <= dataset["seed"] <= last:
        return (f"the demonstrations' reset seeds {first}..{last} hold dataset.seed={dataset['seed']}; choose "
                f"another demos.seed or dataset.seed")
    return None


def run_episode(env, view, policy, seed: int, frames: bool = False, watch=None) -> dict:
    """One deterministic episode from the fixed reset `seed` (`run_episodes` with one env). With
    frames, the env must render images. `watch(step, action)`, if given, sees the reset (action
    None) and every step after its action: a diagnostic's window on the protocol's own episodes
    (benchmarks/episode_speeds.py)."""
    return run_episodes([env], view, policy, [seed], {0} if frames else (),
                        watch=(lambda k, step, action: watch(step, action)) if watch else None)[0]


def run_episodes(envs: list, view, policy, seeds: list[int], frames=(), watch=None) -> list[dict]:
    """Deterministic episodes from the fixed resets `seeds`, one per env of `envs`, stepped
    together: each step encodes every running episode's picture in one call (`view.codes`) and
    asks the policy for all of their actions in one (`policy.act`). An episode ends on its own (its
    time limit, or an absorbing end such as a fall); the others go on without it. The episodes
    whose index is in `frames` keep their first frame, final frame and goal image.

    Each episode's numbers are a function of the group it ran in: a batch computes the same maths
    as single rows up to floating-point order. `watch(k, step, action)` sees episode k's reset and
    every step after its action."""
    if len(seeds) > len(envs):
        raise ValueError(f"{len(seeds)} episodes need as many envs, got {len(envs)}")
    envs = envs[: len(seeds)]
    views = [view.for_episode() for _ in seeds]
    policy.reset(seeds)
    steps = [env.reset(seed=seed) for env, seed in zip(envs, seeds)]
    goals = _each(views, steps, "goal", view.codes([step.goal_image for step in steps]))
    observed = _each(views, steps, "observe", view.codes([step.image for step in steps]))
    obs = [o for o, _ in observed]
    results = [{"first": step.image if k in frames else None, "total": 0.0, "steps": 0,
                "min_distance": step.distance, "reached": False, "achieved": achieved}
               for k, (step, (_, achieved)) in enumerate(zip(steps, observed))]
    if watch:
        for k, step in enumerate(steps):
            watch(k, step, None)
    running = [k for k, step in enumerate(steps) if not (step.terminated or step.truncated)]
    while running:
        actions = policy.act(np.stack([obs[k] for k in running]), np.stack([goals[k] for k in running]))
        for k, action in zip(running, actions):
            steps[k] = envs[k].step(policy.env_action(action))
            if watch:
                watch(k, steps[k], action)
        ran = [steps[k] for k in running]
        for k, step, (o, achieved) in zip(running, ran, _each([views[k] for k in running], ran, "observe",
                                                                view.codes([step.image for step in ran]))):
            obs[k], result = o, results[k]
            result["achieved"] = achieved
            result["total"] += views[k].reward(step)
            result["steps"] += 1
            result["min_distance"] = min(result["min_distance"], step.distance)
            result["reached"] = result["reached"] or bool(step.success)
        running = [k for k in running if not (steps[k].terminated or steps[k].truncated)]
    out = []
    for k, (step, result) in enumerate(zip(steps, results)):
        row = {"final_distance": step.distance, "success": bool(step.success), "reached": result["reached"],
               "min_distance": result["min_distance"],
               "latent_distance": views[k].latent_distance(result["achieved"], goals[k]),
               "return": result["total"], "steps": result["steps"]}
        if k in frames:
            row["frames"] = [result["first"], step.image, step.goal_image]
        out.append(row)
    return out


def _each(views: list, steps: list, what: str, codes) -> list:
    """`view.observe(step, code)` (or `goal`) of each episode's view, with its row of the batch's
    codes (None where the view has no model to encode with)."""
    return [getattr(view, what)(step, None if codes is None else codes[k]) for k, (view, step) in
            enumerate(zip(views, steps))]


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
