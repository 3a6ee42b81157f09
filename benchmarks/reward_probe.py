"""Reward probes: a `visgoal train` or `evaluate` run with a reward the pipeline never gives an
image agent, to tell which part of it fails (the observation, the goal, or the reward).

    python benchmarks/reward_probe.py --weights 1 7 -- train --env inverted_pendulum --method td3 \
        --seed 0 --out R/weighted/seed0 --set train.total_steps=50000
    python benchmarks/reward_probe.py --weights 1 7 --sparse 0.1 -- train ...      # -1 unless within 0.1
    python benchmarks/reward_probe.py --true-goal -- train --env inverted_pendulum --method rig \
        --seed 0 --out R/true/seed0 --vae V --dataset D --set train.total_steps=50000
    python benchmarks/reward_probe.py --true-goal -- evaluate --env inverted_pendulum --method rig \
        --seeds 0 --runs R/true --out R/true/eval.csv

--weights / --sparse: the state oracle pursues the goal on every env (the pendulum's too, whose
`oracle_reward: env` it overrides), with the reward -||w * (achieved' - g)||, or -1 wherever that
weighted distance exceeds the sparse threshold (0 else): does a reward that weighs the goal's
parts as a VAE's latent does (inverted_pendulum: 0.1 rad of tilt as 7 times 0.1 m of cart)
still teach TD3? --true-goal: rig still observes only its latents, but its goal is the latent
of the goal image with the true goal vector appended, and its reward is the true distance:
how far TD3 gets on the latents when the reward and the goal are perfect. Evaluation through
--true-goal runs in this one process (a spawned worker would not carry the probe). The
protocol is unchanged: success and distances are the true ones whatever the agent learned from.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from visgoal.agents.replay import negative_distance


def weighted_reward(weights: np.ndarray, sparse: float):
    def reward(next_achieved: np.ndarray, goal: np.ndarray, env_reward: np.ndarray) -> np.ndarray:
        negative = negative_distance(next_achieved * weights, goal * weights, env_reward)
        return -(-negative > sparse).astype(np.float32) if sparse > 0 else negative
    return reward


def probe_true_goal(goal_dims: int) -> None:
    """LatentView's achieved and desired goals each carry the true goal vector (`goal_dims` long)
    after the latent; rig's reward reads the true part only."""
    import visgoal.agents.rig as rig
    from visgoal.agents.views import LatentView

    init, observe, goal = LatentView.__init__, LatentView.observe, LatentView.goal

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.goal_dim += goal_dims  # the policy's input grows by the true goal

    def observe_true(self, step):
        obs, z = observe(self, step)
        return obs, np.concatenate([z, np.asarray(step.achieved_goal, np.float32)])

    def goal_true(self, step):
        return np.concatenate([goal(self, step), np.asarray(step.desired_goal, np.float32)])

    def true_distance(next_achieved: np.ndarray, g: np.ndarray, env_reward: np.ndarray) -> np.ndarray:
        return negative_distance(next_achieved[:, -goal_dims:], g[:, -goal_dims:], env_reward)

    def no_prior(self, n, rng):
        raise SystemExit("reward_probe.py: --true-goal has no true goal for an imagined one: add --set "
                         "'rig.relabel={future: 0.8}' --set image_agents.exploration_goals=env")

    LatentView.__init__, LatentView.observe, LatentView.goal = __init__, observe_true, goal_true
    LatentView.sample_prior = no_prior
    rig.negative_distance = true_distance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="+", type=float, help="per goal dimension (the state oracle)")
    parser.add_argument("--sparse", type=float, default=0.0, help="threshold of a -1/0 reward (0: dense)")
    parser.add_argument("--true-goal", action="store_true", help="rig on latents, the true goal and distance")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then a visgoal train or evaluate command")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if command[:1] not in (["train"], ["evaluate"]) or "--env" not in command or bool(args.weights) == args.true_goal:
        parser.error("give --weights (with --sparse) or --true-goal, then -- train ... or -- evaluate ... with --env")
    if args.weights:
        import visgoal.agents.td3 as td3

        td3.negative_distance = weighted_reward(np.array(args.weights, np.float32), args.sparse)
        td3.TD3Agent.pursues_goal = classmethod(lambda cls, params, env: True)
    else:
        from visgoal.envs import make_env

        env = make_env(command[command.index("--env") + 1], render_images=False)
        probe_true_goal(len(env.reset(seed=0).desired_goal))
        env.close()
    if command[0] == "evaluate":
        command += ["--set", "speed.processes=1"]
    from visgoal.cli import main as visgoal

    sys.exit(visgoal(command))


if __name__ == "__main__":
    main()
