"""TD3 on FetchReach: visgoal's td3 beside Stable-Baselines3 TD3+HER, in one run.

    pip install -e '.[bench]'
    python benchmarks/td3_vs_sb3.py --seeds 0 1 2 --steps 20000 --eval-every 10000

Both use one thread. SB3 runs the anchor configuration (HER future k=4, batch 256,
gamma 0.95, lr 1e-3, net [64, 64]). Prints eval success at each checkpoint and
env steps per second of the whole training loop (evaluation time excluded).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def sb3_run(seed: int, steps: int, eval_every: int, eval_episodes: int) -> list[dict]:
    import gymnasium as gym
    import gymnasium_robotics
    import torch
    from stable_baselines3 import TD3, HerReplayBuffer
    from stable_baselines3.common.noise import NormalActionNoise

    torch.set_num_threads(1)
    gym.register_envs(gymnasium_robotics)
    env, eval_env = gym.make("FetchReach-v4"), gym.make("FetchReach-v4")
    noise = NormalActionNoise(np.zeros(4), 0.1 * np.ones(4))
    model = TD3("MultiInputPolicy", env, replay_buffer_class=HerReplayBuffer,
                replay_buffer_kwargs=dict(n_sampled_goal=4, goal_selection_strategy="future"),
                batch_size=256, gamma=0.95, learning_rate=1e-3, policy_kwargs=dict(net_arch=[64, 64]),
                action_noise=noise, seed=seed, device="cpu", verbose=0)
    rows, train_seconds = [], 0.0
    for done in range(eval_every, steps + 1, eval_every):
        start = time.perf_counter()
        model.learn(eval_every, reset_num_timesteps=False)
        train_seconds += time.perf_counter() - start
        successes = []
        for episode in range(eval_episodes):
            obs, _ = eval_env.reset(seed=10_000 + episode)
            for _ in range(50):
                obs, _, terminated, truncated, info = eval_env.step(model.predict(obs, deterministic=True)[0])
                if terminated or truncated:
                    break
            successes.append(float(info["is_success"]))
        rows.append({"impl": "sb3", "seed": seed, "env_steps": done, "success": float(np.mean(successes)),
                     "steps_per_s": done / train_seconds})
    return rows


def visgoal_run(seed: int, steps: int, eval_every: int, overrides: list[str]) -> list[dict]:
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "visgoal", "train", "--env", "fetch_reach", "--method", "td3", "--seed", str(seed),
               "--out", tmp, "--quiet", "--set", f"train.total_steps={steps}", "--set", f"train.eval_every={eval_every}",
               *sum((["--set", o] for o in overrides), [])]
        subprocess.run(cmd, check=True)
        curve = pd.read_csv(Path(tmp) / "curve.csv")
    return [{"impl": "visgoal", "seed": seed, "env_steps": int(r.env_steps), "success": float(r.eval_success_rate),
             "steps_per_s": r.env_steps / r.train_seconds if "train_seconds" in curve else r.env_steps / r.wall_clock_s}
            for r in curve.itertuples() if r.env_steps > 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--eval-every", type=int, default=10_000)
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="visgoal --set overrides")
    parser.add_argument("--only", choices=("sb3", "visgoal"), default=None)
    args = parser.parse_args()
    import pandas as pd

    rows = []
    for seed in args.seeds:
        if args.only != "visgoal":
            rows += sb3_run(seed, args.steps, args.eval_every, args.eval_episodes)
        if args.only != "sb3":
            rows += visgoal_run(seed, args.steps, args.eval_every, args.overrides)
        print(pd.DataFrame(rows).to_string(index=False), flush=True)
    table = pd.DataFrame(rows).groupby(["impl", "env_steps"]).agg(
        success_mean=("success", "mean"), success_min=("success", "min"), steps_per_s=("steps_per_s", "mean"),
        seeds=("seed", "count"))
    print(table.to_string(float_format=lambda x: f"{x:.3f}"))


if __name__ == "__main__":
    main()
