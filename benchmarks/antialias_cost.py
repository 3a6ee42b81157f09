"""What inverted_pendulum's smoothed pictures cost, and how far cheaper smoothing moves their pixels.

    python benchmarks/antialias_cost.py --episodes 20 --steps 30

Renders the same states (random actions from the protocol's resets) with the pendulum's `antialias`
and with each alternative (supersample k, multisample n), in turn, and prints milliseconds per frame
and how far each picture is from the pendulum's own: mean absolute difference per pixel channel
(0-255), the share of pixels where a channel differs by more than 8, and the L2 distance per picture
(the unit of docs/experiments/2026-12-06-pendulum-antialias.md).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

ALTERNATIVES = [(2, 4), (4, 0), (3, 0), (2, 0), (1, 4)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()

    from visgoal.envs import load_spec, make_env
    from visgoal.envs.core import backdrop_tiles
    from visgoal.envs.render import FastRenderer

    spec = load_spec("inverted_pendulum")
    own = (spec.antialias["supersample"], spec.antialias["multisample"])
    with make_env("inverted_pendulum") as env:
        decor = backdrop_tiles(spec.restyle["backdrop"], spec.name)
        renderers = {c: FastRenderer(env.model, env.image_size, env.image_size, spec.camera, decor=decor,
                                     supersample=c[0], multisample=c[1]) for c in [own, *ALTERNATIVES] }
        pictures = {c: [] for c in renderers}
        seconds = dict.fromkeys(renderers, 0.0)
        for episode in range(args.episodes):
            env.reset(seed=episode)
            for _ in range(args.steps):
                env.step(env.action_space.sample() * 0.3)
                for c, renderer in renderers.items():
                    start = time.perf_counter()
                    pictures[c].append(renderer.render(env.data).astype(np.int16))
                    seconds[c] += time.perf_counter() - start
    reference = np.stack(pictures[own])
    frames = len(reference)
    print(f"{'supersample, multisample':<26} {'ms/frame':>9} {'mean |d|':>9} {'px > 8':>8} {'L2/picture':>11}  ({frames} frames)")
    for c in renderers:
        difference = np.abs(np.stack(pictures[c]) - reference)
        l2 = np.sqrt((difference.astype(float) ** 2).sum(axis=(1, 2, 3))).mean()
        label = f"{c[0]}, {c[1]}" + (" (the pendulum's)" if c == own else "")
        print(f"{label:<26} {seconds[c] / frames * 1000:>9.2f} {difference.mean():>9.3f} "
              f"{(difference.max(axis=-1) > 8).mean():>8.2%} {l2:>11.1f}")


if __name__ == "__main__":
    main()
