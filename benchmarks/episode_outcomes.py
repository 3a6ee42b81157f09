"""Which of the protocol's episodes two methods hold, side by side over their seeds.

    python benchmarks/episode_outcomes.py --env point_maze \
        --a results/point_maze/td3/seed0 results/point_maze/td3/seed1 results/point_maze/td3/seed2 \
        --b results/point_maze/crl/seed0 results/point_maze/crl/seed1 results/point_maze/crl/seed2

Replays the evaluation protocol's fixed episodes with each run's policy.pt through the protocol's
own `run_episode`, and counts for each episode how many of a method's seeds hold its goal at the
last step. Prints the table of those counts (rows: method A's, columns: method B's), then every
episode that one method holds on no seed, with where it starts and where its goal is (the task's
achieved and desired goals), and how many seeds of each method reach it at some step. Whether two
methods fail the same goals tells a goal out of reach at the budget from one method's own failing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def outcomes(env_name: str, run: Path, episodes: int, eval_seed: int) -> np.ndarray:
    """(episodes, 2 + 2 * goal size): success, reached, the first achieved goal and the desired goal."""
    from visgoal.agents import load_policy
    from visgoal.envs import make_env
    from visgoal.evaluation import episode_seed, run_episode

    view, policy, _ = load_policy(run)
    rows = []
    with make_env(env_name, render_images=view.needs_images) as env:
        for i in range(episodes):
            start = {}

            def watch(step, action):
                if action is None:
                    start["achieved"], start["desired"] = step.achieved_goal.copy(), step.desired_goal.copy()

            result = run_episode(env, view, policy, episode_seed(eval_seed, i), watch=watch)
            rows.append([result["success"], result["reached"], *start["achieved"], *start["desired"]])
    return np.array(rows, dtype=float)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True)
    parser.add_argument("--a", type=Path, nargs="+", required=True, help="method A's runs (one per seed)")
    parser.add_argument("--b", type=Path, nargs="+", required=True, help="method B's runs (one per seed)")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--eval-seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    a = np.stack([outcomes(args.env, run, args.episodes, args.eval_seed) for run in args.a])
    b = np.stack([outcomes(args.env, run, args.episodes, args.eval_seed) for run in args.b])
    held_a, held_b = a[:, :, 0].sum(0).astype(int), b[:, :, 0].sum(0).astype(int)
    print(f"{args.env}: {args.episodes} protocol episodes; A {[str(r) for r in args.a]}, B {[str(r) for r in args.b]}")
    print(f"success: A {a[:, :, 0].mean():.2f}, B {b[:, :, 0].mean():.2f}")
    table = np.zeros((len(a) + 1, len(b) + 1), int)
    np.add.at(table, (held_a, held_b), 1)
    print("| seeds of A holding it \\ of B | " + " | ".join(str(j) for j in range(len(b) + 1)) + " |")
    print("|---" * (len(b) + 2) + "|")
    for i, row in enumerate(table):
        print(f"| {i} | " + " | ".join(str(v) for v in row) + " |")
    size = (a.shape[2] - 2) // 2
    print("| episode | start | goal | A holds | B holds | A reaches | B reaches |")
    print("|---:|---|---|---:|---:|---:|---:|")
    for i in np.flatnonzero((held_a == 0) | (held_b == 0)):
        start, goal = a[0, i, 2 : 2 + size], a[0, i, 2 + size :]
        print(f"| {i} | {np.round(start, 2).tolist()} | {np.round(goal, 2).tolist()} | {held_a[i]} | {held_b[i]} | "
              f"{int(a[:, i, 1].sum())} | {int(b[:, i, 1].sum())} |")


if __name__ == "__main__":
    main()
