"""How far an ant tilts under random actions, and whether it comes back: the threshold of
ant_maze's fall (`task_kwargs.max_tilt` in envs/ant_maze.yaml).

    python benchmarks/ant_tilt.py --episodes 20

Runs AntMaze_UMaze-v5 (700 steps, the registered length) with uniform random actions, as the first
1,000 steps of every run act, and prints per episode the first step past 60, 90 and 120 degrees of
torso tilt and whether the torso came back under 45 degrees afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import io

import gymnasium as gym
import numpy as np

with contextlib.redirect_stderr(io.StringIO()):
    import gymnasium_robotics

gym.register_envs(gymnasium_robotics)


def tilt(qpos: np.ndarray) -> float:
    """Degrees between the torso's up axis and the world's (the free joint's quaternion w, x, y, z)."""
    _, x, y, _ = qpos[3:7]
    return float(np.degrees(np.arccos(np.clip(1 - 2 * (x * x + y * y), -1, 1))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=20)
    args = parser.parse_args()
    env = gym.make("AntMaze_UMaze-v5", max_episode_steps=700)
    thresholds = (60, 90, 120)
    back = {t: 0 for t in thresholds}
    past = {t: 0 for t in thresholds}
    print("| episode | " + " | ".join(f"first past {t} deg (came back)" for t in thresholds) + " | max tilt |")
    print("|---" * (len(thresholds) + 2) + "|")
    for episode in range(args.episodes):
        env.reset(seed=episode)
        env.action_space.seed(episode)
        tilts = []
        for _ in range(700):
            env.step(env.action_space.sample())
            tilts.append(tilt(env.unwrapped.data.qpos))
        tilts = np.array(tilts)
        cells = []
        for t in thresholds:
            if not (tilts > t).any():
                cells.append("never")
                continue
            first = int(np.argmax(tilts > t))
            returned = bool((tilts[first:] < 45).any())
            past[t] += 1
            back[t] += returned
            cells.append(f"{first + 1}{' (yes)' if returned else ''}")
        print(f"| {episode} | " + " | ".join(cells) + f" | {tilts.max():.0f} |")
    for t in thresholds:
        print(f"past {t} deg: {past[t]} of {args.episodes} episodes, came back under 45 deg: {back[t]}")


if __name__ == "__main__":
    main()
