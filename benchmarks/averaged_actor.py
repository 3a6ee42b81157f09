"""An averaged actor against the actor it averages, from the same runs, on the evaluation protocol.

    python benchmarks/averaged_actor.py --env point_maze --runs results/point_maze/crl --seeds 0 1 2

A run trained with `crl.actor_average` (crl) or `td3.actor_average` (td3; rig and tdm through
`image_agents.td3.actor_average`) acts in evaluations with the average (its policy.pt), and
its checkpoint holds the actor that rollouts used, at the same env step. The averaged actor changes
nothing that is learned, so both come from one training: this plays the protocol's fixed episodes
with each and prints them side by side, per seed and as mean ± std over seeds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def policies(run: Path):
    """(view, {"actor": policy, "averaged": policy}, env steps) of one run at its last checkpoint."""
    import torch

    from visgoal.agents import agent_class, load_policy
    from visgoal.paths import CHECKPOINT, POLICY

    view, averaged, meta = load_policy(run)
    checkpoint = torch.load(run / CHECKPOINT, map_location="cpu", weights_only=True)
    if "averaged_actor" not in checkpoint["agent"]:
        raise SystemExit(f"{run}: trained without an averaged actor (crl.actor_average or td3.actor_average); "
                         f"nothing to compare")
    if checkpoint["env_steps"] != meta["env_steps"]:
        raise SystemExit(f"{run}: its checkpoint ({checkpoint['env_steps']} steps) and policy.pt "
                         f"({meta['env_steps']}) are of different steps; finish the run first")
    saved = torch.load(run / POLICY, map_location="cpu", weights_only=True)
    saved["weights"] = checkpoint["agent"]["actor"]
    return view, {"actor": agent_class(meta["method"]).load_policy(saved), "averaged": averaged}, meta["env_steps"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True)
    parser.add_argument("--runs", type=Path, required=True, help="a method's folder of seed<k> runs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--eval-seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from visgoal.envs import make_env
    from visgoal.evaluation import evaluate_policy, summary

    torch.set_num_threads(1)
    results = {}
    for seed in args.seeds:
        view, acting, steps = policies(args.runs / f"seed{seed}")
        with make_env(args.env, render_images=view.needs_images) as env:
            for name, policy in acting.items():
                results[seed, name] = summary(evaluate_policy(env, view, policy, args.episodes, args.eval_seed))
        print(f"seed {seed} at {steps} env steps: " + ", ".join(
            f"{name} {results[seed, name]['success_rate']:.2f}" for name in acting), flush=True)
    print(f"\n{args.env}, {args.runs}: {args.episodes} protocol episodes per seed")
    print("| seed | actor: success | final distance | averaged: success | final distance |")
    print("|---|---:|---:|---:|---:|")
    for seed in args.seeds:
        a, b = results[seed, "actor"], results[seed, "averaged"]
        print(f"| {seed} | {a['success_rate']:.2f} | {a['final_distance']:.3f} | {b['success_rate']:.2f} | "
              f"{b['final_distance']:.3f} |")
    cells = []
    for name in ("actor", "averaged"):
        for key, digits in (("success_rate", 2), ("final_distance", 3)):
            values = np.array([results[seed, name][key] for seed in args.seeds])
            cells.append(f"{values.mean():.{digits}f} ± {values.std():.{digits}f}")
    print(f"| mean ± std | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
