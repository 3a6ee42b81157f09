"""Does a VAE's latent tell goals apart? Each goal image's nearest neighbour in latent space, and how far it truly is.

    python benchmarks/latent_neighbours.py --env point_maze --vae results/point_maze/vae.pt --goals 400

Goals are drawn by the env's own task sampler, rendered as the goal images the agents get and
encoded (posterior means). For each, the goal whose latent is nearest is found among the others,
and the true distance between the two goals printed: the median, the share beyond the env's success
threshold, and the worst pairs. Where a latent confuses two goals far apart, a policy on it cannot
tell which of them it was given; where every nearest neighbour is a near one, the goal is legible
and what fails is elsewhere.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True)
    parser.add_argument("--vae", type=Path, required=True)
    parser.add_argument("--goals", type=int, default=400)
    parser.add_argument("--worst", type=int, default=5, help="the pairs farthest apart to print")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from visgoal.envs import make_env
    from visgoal.vae import load_vae

    vae = load_vae(args.vae)
    with make_env(args.env, image_size=vae.image_size) as env:
        env.reset(seed=args.seed)
        goals = np.stack([env.sample_goal() for _ in range(args.goals)])
        images = np.stack([env.render_goal(goal) for goal in goals])
        threshold = env.spec.success_threshold
    z = vae.encode(images)
    apart = np.linalg.norm(z[:, None] - z[None], axis=-1)
    np.fill_diagonal(apart, np.inf)
    nearest = apart.argmin(1)
    true = np.linalg.norm(goals[nearest] - goals, axis=-1)
    spacing = np.linalg.norm(goals[:, None] - goals[None], axis=-1)
    np.fill_diagonal(spacing, np.inf)
    print(f"{args.env}, {args.goals} goals, VAE {args.vae}")
    print(f"true distance to the latent's nearest neighbour: median {np.median(true):.3f}, "
          f"share beyond the success threshold {threshold}: {np.mean(true > threshold):.3f}; "
          f"to the truly nearest goal: median {np.median(spacing.min(1)):.3f}")
    for i in np.argsort(true)[::-1][: args.worst]:
        print(f"  goal {np.round(goals[i], 2).tolist()}: latent neighbour {np.round(goals[nearest[i]], 2).tolist()}, "
              f"{true[i]:.3f} apart")


if __name__ == "__main__":
    main()
