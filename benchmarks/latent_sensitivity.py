"""What a VAE's latent distance sees: each joint of the simulator moved alone, and the latent it costs.

    python benchmarks/latent_sensitivity.py --env inverted_pendulum --vae results/inverted_pendulum/vae.pt \
        --offsets 0.05 0.1 0.2 0.4 1.0

From the env's first reset (velocities zeroed), every joint of `qpos` (by name) is moved by each
offset on its own; the image is rendered, encoded, and its latent's distance to the unmoved
image's latent is printed, one row per joint, and below it the pictures' own distance (the L2 norm
of the pixels' difference, in 0-255 units). A reward of -latent distance (RIG, TDM) can only tell
apart what moves this distance: on inverted_pendulum, a fall (the pole tilted by 0.2 rad, where the
episode ends) against a few centimetres of cart. With `--from-goal` the joints move from the state
that the reset's goal image shows instead (the pendulum's: the pole exactly upright).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import mujoco
import numpy as np


def joint_slots(model) -> list[tuple[str, int]]:
    """(joint name, its first qpos index) for every joint with a name."""
    return [(model.joint(j).name, int(model.jnt_qposadr[j])) for j in range(model.njnt) if model.joint(j).name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True)
    parser.add_argument("--vae", type=Path, required=True)
    parser.add_argument("--offsets", nargs="+", type=float, default=[0.05, 0.1, 0.2, 0.4])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--from-goal", action="store_true", help="move the joints from the goal image's state")
    args = parser.parse_args()

    from visgoal.envs import make_env
    from visgoal.vae import load_vae

    vae = load_vae(args.vae)
    with make_env(args.env, image_size=vae.image_size) as env:
        env.reset(seed=args.seed)
        if args.from_goal:
            env.task.apply_goal(env.goal)
        env.data.qvel[:] = 0.0
        mujoco.mj_forward(env.model, env.data)
        start = env.get_state()

        def picture(joint: int | None = None, offset: float = 0.0) -> np.ndarray:
            env.set_state(start)
            if joint is not None:
                env.data.qpos[joint] += offset
                mujoco.mj_forward(env.model, env.data)
            return env.render()

        origin = picture()
        latent_origin = vae.encode(origin[None])[0]
        where = "the state of its first goal image" if args.from_goal else "its first reset"
        for title, distance, digits in (
            ("latent distance", lambda image: np.linalg.norm(vae.encode(image[None])[0] - latent_origin), 3),
            ("pixel distance (L2, 0-255)", lambda image: np.linalg.norm(image.astype(float) - origin), 0)):
            print(f"{title} on {args.env} from {where}, one joint moved (VAE {args.vae})")
            print("| joint | " + " | ".join(f"{o:+g}" for o in args.offsets) + " |")
            print("|---|" + "---:|" * len(args.offsets))
            for name, index in joint_slots(env.model):
                cells = [distance(picture(index, o)) for o in args.offsets]
                print(f"| {name} | " + " | ".join(f"{c:.{digits}f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
