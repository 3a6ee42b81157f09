"""The protocol's episodes stepped one at a time against stepped together: the same episodes, the
same policies, one process, both timed in turn.

    python benchmarks/batched_evaluation.py --env fetch_reach --method tdm --batch 10

Prints episodes per second of each, the episodes whose success or final distance differ, and for
each of those the first step where the two ways' actions differ and by how much (up to that step
both saw the same pictures; the trajectories part after it).
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--eval-seed", type=int, default=0)
    parser.add_argument("--results", default="results", help="results tree holding <env>/<method>/seed<k>")
    args = parser.parse_args()

    import torch

    from visgoal import paths
    from visgoal.agents import load_policy
    from visgoal.envs import make_env
    from visgoal.evaluation import episode_seed, run_episodes

    torch.set_num_threads(1)
    rows = []
    seconds = {"one at a time": 0.0, f"batch of {args.batch}": 0.0}
    with contextlib.ExitStack() as stack:
        envs = [stack.enter_context(make_env(args.env)) for _ in range(args.batch)]
        for seed in args.seeds:
            view, policy, _ = load_policy(paths.seed_dir(f"{args.results}/{args.env}/{args.method}", seed))
            for start in range(0, args.episodes, args.batch):
                group = list(range(start, min(start + args.batch, args.episodes)))
                resets = [episode_seed(args.eval_seed, i) for i in group]
                first = {"single": {}, "batch": {}}
                begin = time.perf_counter()
                single = [run_episodes(envs[:1], view, policy, [reset],
                                       watch=lambda k, step, action, i=i: _first(first["single"], i, action))[0]
                          for i, reset in zip(group, resets)]
                middle = time.perf_counter()
                batch = run_episodes(envs, view, policy, resets,
                                     watch=lambda k, step, action: _first(first["batch"], group[k], action))
                seconds["one at a time"] += middle - begin
                seconds[f"batch of {args.batch}"] += time.perf_counter() - middle
                for i, a, b in zip(group, single, batch):
                    rows.append({"seed": seed, "episode": i, "success": (a["success"], b["success"]),
                                 "final_distance": (a["final_distance"], b["final_distance"]),
                                 **_parting(first["single"][i], first["batch"][i])})
    episodes = len(rows)
    print(f"{args.env}/{args.method}, seeds {args.seeds}, {episodes} episodes")
    for way, total in seconds.items():
        print(f"  {way:<16} {episodes / total:7.2f} episodes/s")
    differ = [r for r in rows if r["success"][0] != r["success"][1]]
    moved = [r for r in rows if r["final_distance"][0] != r["final_distance"][1]]
    print(f"  success differs in {len(differ)} of {episodes} episodes; final distance in {len(moved)}; "
          f"success rate {np.mean([r['success'][0] for r in rows]):.3f} one at a time, "
          f"{np.mean([r['success'][1] for r in rows]):.3f} batched")
    print(f"  where actions first differ, by at most {max(r['parting'] for r in rows):.2e} (all episodes)")
    for r in differ:
        print(f"  seed {r['seed']} episode {r['episode']}: success {r['success'][0]} -> {r['success'][1]}, "
              f"final distance {r['final_distance'][0]:.4f} -> {r['final_distance'][1]:.4f}, "
              f"actions first differ at step {r['step']}, by {r['parting']:.2e}")


def _first(seen: dict, episode: int, action) -> None:
    if action is not None:
        seen.setdefault(episode, []).append(np.asarray(action))


def _parting(a: list, b: list) -> dict:
    """The first step where two episodes' actions differ, and the largest difference there."""
    for step, (x, y) in enumerate(zip(a, b)):
        if not np.array_equal(x, y):
            return {"step": step, "parting": float(np.abs(x - y).max())}
    return {"step": None, "parting": 0.0}


if __name__ == "__main__":
    main()
