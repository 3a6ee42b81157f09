"""Off-policy learning with demonstrations (Nair, McGrew, Andrychowicz, Zaremba & Abbeel 2018,
"Overcoming Exploration in Reinforcement Learning with Demonstrations", section 4).

- The demonstrations (`demos.h5`, written by `python -m visgoal demos`) fill a replay of their own,
  relabelled as the agent's own replay is (HER's future goals: a demonstration reaches every goal
  it passes through), and every batch takes `demo_learning.batch_share` of its rows from it.
- The actor gets a behaviour-cloning term on those rows, kept only where the critic values the
  demonstrated action above the actor's own (the Q-filter):

      L = L_actor / mean|Q| + bc_weight * mean over demonstration rows of
          1[Q(s, a_demo) > Q(s, pi(s))] * ||pi(s) - a_demo||^2

  The actor's own objective is divided by its mean |Q| (as TD3+BC, Fujimoto & Gu 2021) so that one
  `bc_weight` means the same on every environment and method, whatever the scale of its values.

A demonstration reaches an agent through the agent's own view, as its own steps do: the state
oracle reads the file's state vectors, an agent on latents encodes the file's pictures with its VAE
(and encodes them again after each fine-tuning), an agent on pixels reads the pictures.
"""

from __future__ import annotations

import numpy as np
import torch

from visgoal.agents.replay import EpisodeReplay


def q_filtered_bc(action: torch.Tensor, demo_action: torch.Tensor, q_demo: torch.Tensor, q_policy: torch.Tensor,
                  demo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, kept): the mean over demonstration rows (`demo` 1) of ||action - demo_action||^2 where
    the critic prefers the demonstrated action (q_demo > q_policy), 0 elsewhere; and the share of
    demonstration rows kept. Gradients reach `action` only."""
    keep = demo * (q_demo > q_policy).to(demo.dtype)
    rows = demo.sum().clamp_min(1.0)
    loss = (keep * ((action - demo_action) ** 2).sum(-1)).sum() / rows
    return loss, keep.sum() / rows


def to_unit(actions: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The env's actions in the agents' [-1, 1] (Policy.env_action's inverse)."""
    return np.clip((actions - (high + low) / 2) / ((high - low) / 2), -1.0, 1.0).astype(np.float32)


class DemoReplay:
    """The demonstrations as an agent sees them, in a replay of their own (EpisodeReplay, with the
    agent's relabelling and reward). `demos`: `visgoal.data.demos.read_demos`' dict, with its state
    group where the view is the state's. A transition is what was executed (`actions`)."""

    def __init__(self, demos: dict, view, replay_options: dict, reads: tuple[str, ...], terminal_for_goals: bool,
                 action_low: np.ndarray, action_high: np.ndarray):
        self.demos, self.view = demos, view
        self.episodes, self.steps = len(demos["length"]), int(demos["length"].sum())
        longest = int(demos["length"].max())  # a slot per demonstration, each as long as the longest
        self.replay = EpisodeReplay(self.episodes * longest, longest, view.obs_shape,
                                    view.goal_dim, demos["actions"].shape[1], obs_dtype=view.dtype,
                                    achieved_is_obs=view.achieved_is_obs,
                                    image_shape=demos["obs"].shape[1:] if view.keeps_frames else None, reads=reads,
                                    **replay_options)
        for e in range(self.episodes):
            frames, actions = self.frames(e), self.actions(e)
            obs, achieved, goal = self.observations(e)
            terminated = np.zeros(len(actions), np.float32)
            terminated[-1] = float(bool(demos["terminated"][e]) and terminal_for_goals)
            self.replay.add_episode(obs, achieved, goal, to_unit(actions, action_low, action_high),
                                    np.zeros(len(actions), np.float32), terminated,
                                    images=frames if view.keeps_frames else None)

    def window(self, e: int) -> slice:
        """Demonstration e's T + 1 frames (and state rows) in the file's arrays."""
        start = int(self.demos["start"][e])
        return slice(start, start + int(self.demos["length"][e]) + 1)

    def frames(self, e: int) -> np.ndarray:
        return self.demos["obs"][self.window(e)]

    def actions(self, e: int) -> np.ndarray:
        """Its T executed actions: an episode has one action fewer than frames."""
        start = int(self.demos["start"][e]) - e
        return self.demos["actions"][start: start + int(self.demos["length"][e])]

    def observations(self, e: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(obs, achieved, goal) of demonstration e as the view sees it."""
        view, demos = self.view, self.demos
        frames, goal_image = self.frames(e), demos["goal"][e]
        if view.kind == "state":
            state = demos["state"]
            return state["observation"][self.window(e)], state["achieved_goal"][self.window(e)], state["desired_goal"][e]
        if view.kind == "pixels":
            return frames, frames, goal_image
        z = view.encode(frames)
        return view.episode_observations(z), z, view.encode(goal_image[None])[0]

    def refresh(self) -> None:
        """After the VAE changed (fine-tuning, a resumed checkpoint): every latent encoded again."""
        if self.view.keeps_frames:
            self.replay.reencode(self.view.encode, observation=self.view.episode_observations)
            self.replay.goal[: self.episodes] = self.view.encode(self.demos["goal"])

    def mix(self, batch: dict, rows: int, rng: np.random.Generator) -> dict:
        """`batch` (the agent's own rows) followed by `rows` demonstration rows, with a `demo` mask:
        0 for the agent's rows, 1 for the demonstrations'."""
        demo = self.replay.sample(rows, rng)
        mixed = {key: np.concatenate([value, demo[key]]) for key, value in batch.items() if key in demo}
        mixed["demo"] = np.concatenate([np.zeros(len(batch["action"]), np.float32), np.ones(rows, np.float32)])
        return mixed
