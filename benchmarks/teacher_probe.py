"""How well a scripted teacher does on the evaluation protocol's episodes, and how it fails.

    python benchmarks/teacher_probe.py --env franka_kitchen --episodes 50 --eval-seeds 0 1
    python benchmarks/teacher_probe.py --env franka_kitchen --episodes 20 --hold
    python benchmarks/teacher_probe.py --env adroit_relocate --episodes 50 --noise 0.05 --noise-on 0:6
    python benchmarks/teacher_probe.py --env adroit_relocate --episodes 50 --option finger_pose=[0,1.6,0.8,0.4]

Runs the env's teacher (visgoal.teachers) through the protocol's own episode loop (`run_episodes`,
episode i of eval seed s reset with `episode_seed(s, i)`), and prints per eval seed: the success
rate (the goal held at the last step), the reached rate (crossed at any step), the mean final
distance, the mean step of the first success, the wall-clock, and each failure's reason as the
teacher tells it (`Teacher.failure`).

`--hold`: franka_kitchen ends its episode the moment the door passes the success threshold
(gymnasium-robotics' `terminate_on_tasks_completed`); with --hold that end is switched off, so the
door must still be open at step 280. `--noise s`: Gaussian noise of std s (in action units) added
to every action (or those `--noise-on` picks) before the env takes it, clipped to the action space:
whether the teacher recovers from actions it did not choose (the DART way of widening
demonstrations). It is seeded by each group's reset seeds, so the numbers repeat for the same --batch.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections import Counter

import numpy as np
import yaml


class NoisyPolicy:
    """A policy whose actions get Gaussian noise, clipped to [low, high], before the env takes them."""

    def __init__(self, policy, std: float, low: np.ndarray, high: np.ndarray, where: slice = slice(None)):
        self.policy, self.low, self.high = policy, low, high
        self.std = np.zeros(low.shape)
        self.std[where] = std  # only the actions `where` selects get noise
        self.rng = np.random.default_rng(0)

    def reset(self, seed=None) -> None:
        self.policy.reset(seed)
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray, goals: np.ndarray) -> np.ndarray:
        actions = self.policy.act(obs, goals)
        return np.clip(actions + self.std * self.rng.standard_normal(actions.shape), self.low, self.high)

    def env_action(self, action: np.ndarray) -> np.ndarray:
        return self.policy.env_action(action)


def make_envs(name: str, n: int, hold: bool) -> list:
    from visgoal.envs import make_env
    from visgoal.envs.core import ImageGoalEnv, load_spec

    if not hold:
        return [make_env(name, render_images=False) for _ in range(n)]
    spec = load_spec(name)
    if not spec.gym_id.startswith("FrankaKitchen"):
        raise SystemExit(f"--hold switches off the kitchen's early end; {name} has none")
    spec = dataclasses.replace(spec, make_kwargs={**spec.make_kwargs, "terminate_on_tasks_completed": False})
    return [ImageGoalEnv(spec, render_images=False) for _ in range(n)]


def probe(envs: list, episodes: int, eval_seed: int, noise: float, noise_on: slice = slice(None),
          options: dict | None = None) -> dict:
    """The protocol's rows for `episodes` episodes of `eval_seed`, with each episode's first success
    step and, where it failed, the teacher's reason."""
    from visgoal.evaluation import episode_seed, run_episodes
    from visgoal.teachers import teacher_agent

    view, policy = teacher_agent(envs, **(options or {}))
    space = envs[0].action_space
    acting = NoisyPolicy(policy, noise, space.low, space.high, noise_on) if noise else policy
    rows, first_success = [], []
    for start in range(0, episodes, len(envs)):
        group = list(range(start, min(start + len(envs), episodes)))
        first, steps = {k: None for k in range(len(group))}, Counter()

        def watch(k, step, action):
            if action is not None:
                steps[k] += 1
                if step.success and first[k] is None:
                    first[k] = steps[k]

        for k, row in enumerate(run_episodes(envs, view, acting, [episode_seed(eval_seed, i) for i in group],
                                             watch=watch)):
            row["failure"] = "" if row["success"] else policy.teachers[k].failure()
            rows.append(row)
            first_success.append(first[k])
    return {"rows": rows, "first_success": first_success}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, choices=["franka_kitchen", "adroit_relocate"])
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[0],
                        help="the protocol's eval seed (0) and validation seeds (1, ...)")
    parser.add_argument("--batch", type=int, default=1, help="episodes stepped together, as `evaluate.batch` does")
    parser.add_argument("--hold", action="store_true", help="franka_kitchen: no early end, the door held to step 280")
    parser.add_argument("--noise", type=float, default=0.0, help="std of Gaussian noise on every action")
    parser.add_argument("--noise-on", default=":", metavar="START:STOP",
                        help="the action indices that get the noise (adroit_relocate: 0:6 the arm, 6:8 the wrist, "
                             "8:30 the fingers and thumb); all by default")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="a teacher's keyword argument, e.g. finger_pose=[0,1.6,0.8,0.4] (YAML value)")
    args = parser.parse_args()
    noise_on = slice(*[int(part) if part else None for part in args.noise_on.split(":")])
    options = {}
    for option in args.option:
        name, _, value = option.partition("=")
        options[name] = yaml.safe_load(value)

    envs = make_envs(args.env, args.batch, args.hold)
    print(f"{args.env}: teacher, {args.episodes} protocol episodes per eval seed, batch {args.batch}"
          f"{', early end off' if args.hold else ''}"
          f"{f', action noise {args.noise} on actions {args.noise_on}' if args.noise else ''}"
          f"{''.join(f', {name}={value}' for name, value in options.items())}")
    for eval_seed in args.eval_seeds:
        start = time.perf_counter()
        result = probe(envs, args.episodes, eval_seed, args.noise, noise_on, options)
        seconds = time.perf_counter() - start
        rows = result["rows"]
        firsts = [f for f in result["first_success"] if f is not None]
        failures = Counter(row["failure"] for row in rows if not row["success"])
        print(f"eval seed {eval_seed}: success {np.mean([r['success'] for r in rows]):.2f}, "
              f"reached {np.mean([r['reached'] for r in rows]):.2f}, "
              f"final distance {np.mean([r['final_distance'] for r in rows]):.4f}, "
              f"first success at step {np.mean(firsts) if firsts else float('nan'):.1f} "
              f"(min {min(firsts, default=0)}, max {max(firsts, default=0)}), "
              f"episode length {np.mean([r['steps'] for r in rows]):.1f}, "
              f"{seconds:.1f} s ({seconds / len(rows):.2f} s an episode)")
        for reason, count in failures.most_common():
            print(f"  failed {count}: {reason}")
    for env in envs:
        env.close()


if __name__ == "__main__":
    main()
