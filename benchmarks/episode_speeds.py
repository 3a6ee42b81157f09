"""How a trained policy arrives at its goals: speeds and saturated actions over the protocol's episodes.

    python benchmarks/episode_speeds.py --env point_maze --run results/point_maze/crl/seed0

Replays the evaluation protocol's fixed episodes through its own `run_episode` (the same resets,
the same deterministic policy) and groups them as the protocol scores them: held (success at the last
step), reached and lost (the threshold crossed at some step, not at the last), never reached.
For each group it prints the median speed of the simulator's bodies (|qvel|) at the episode's
closest approach to the goal and at its last step, and the share of steps whose action has a
coordinate at its bound. A policy that stops on its goals approaches them slowly; one that
passes through them at full speed, its actions pinned to their bounds, holds few of them.
"Reversals" is the share of steps whose action has a coordinate beyond half its bound with the
opposite sign of the step before's, also beyond half: a bang-bang actor chattering from step to step.
It also counts the episodes that ended before the env's time limit (the pendulum's fall), and the
median step at which the group's episodes first crossed the threshold.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def reversals(actions: np.ndarray) -> float:
    """The share of steps whose action (in units of its bound, (steps, dims)) has a coordinate beyond
    half its bound whose sign is the opposite of the step before's, also beyond half."""
    if len(actions) < 2:
        return 0.0
    before, after = actions[:-1], actions[1:]
    return float(((before * after < 0) & (np.abs(before) > 0.5) & (np.abs(after) > 0.5)).any(-1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True)
    parser.add_argument("--run", type=Path, required=True, help="a trained run's folder (its policy.pt)")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--eval-seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from visgoal.agents import load_policy
    from visgoal.envs import make_env
    from visgoal.evaluation import episode_seed, run_episode

    torch.set_num_threads(1)
    view, policy, _ = load_policy(args.run)
    rows = []
    with make_env(args.env, render_images=view.needs_images) as env:
        high = np.abs(env.action_space.high)
        for i in range(args.episodes):
            seen = {"closest": np.inf, "actions": [], "first": np.nan, "ended": False}

            def watch(step, action):  # called within this iteration: `seen` is this episode's
                if step.distance < seen["closest"]:
                    seen["closest"], seen["speed there"] = step.distance, np.linalg.norm(env.data.qvel)
                if step.success and np.isnan(seen["first"]):
                    seen["first"] = len(seen["actions"])
                if action is not None:
                    seen["actions"].append(np.ravel(action) / high)  # in units of its bound
                seen["ended"] = step.terminated

            result = run_episode(env, view, policy, episode_seed(args.eval_seed, i), watch=watch)
            group = "held" if result["success"] else "reached, lost" if result["reached"] else "never reached"
            actions = np.array(seen["actions"])
            pinned = (np.abs(actions) >= 0.999).any(-1).mean()
            rows.append((group, seen["speed there"], np.linalg.norm(env.data.qvel), pinned,
                         seen["ended"], seen["first"], reversals(actions)))
    print(f"{args.env}, {args.run}: {args.episodes} protocol episodes")
    print("| episodes | count | speed at the closest approach | speed at the last step | actions at a bound "
          "| reversals | ended before the limit | first step at the goal (median) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for group in ("held", "reached, lost", "never reached"):
        picked = np.array([r[1:] for r in rows if r[0] == group], dtype=float).reshape(-1, 6)
        if len(picked):
            first = f"{np.nanmedian(picked[:, 4]):.0f}" if not np.isnan(picked[:, 4]).all() else ""
            print(f"| {group} | {len(picked)} | {np.median(picked[:, 0]):.2f} | {np.median(picked[:, 1]):.2f} | "
                  f"{picked[:, 2].mean():.2f} | {picked[:, 5].mean():.2f} | {picked[:, 3].sum():.0f} | {first} |")


if __name__ == "__main__":
    main()
