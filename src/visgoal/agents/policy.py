"""Acting: the one path from an observation and a goal to an action, for training rollouts
and evaluation alike (OGBench's `sample_actions`, used by both).

A `Policy` is the actor, plus for TDM the horizon tau it is asked to reach the goal in:
`horizon` is "countdown" during rollouts (tau_max, tau_max - 1, ..., 0, tau_max, ...), and
`tdm.eval_tau` on real goals. It may pick actions with a `select` function instead of the
actor's output (TDM's argmax over sampled candidates). Training adds the agent's
exploration noise to what the policy returns; evaluation uses it as it is.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch


def countdown(t: int, tau_max: int) -> int:
    """The horizon at episode step t: tau_max, tau_max - 1, ..., 0, then tau_max again."""
    return tau_max - t % (tau_max + 1)


class Policy:
    def __init__(self, actor: torch.nn.Module, horizon: int | str | None = None, tau_max: int = 0,
                 select: Callable | None = None, generator: torch.Generator | None = None):
        """`horizon`: None (no horizon input), an integer tau, or "countdown". `select(x, goal, generator)`
        picks an action for one input x (1, D); its candidates come from `generator` (the agent's, in
        training, so that checkpoints carry it), else from the policy's own, reseeded every episode."""
        self.actor, self.horizon, self.tau_max, self.select = actor, horizon, tau_max, select
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.t = 0
        self.device = actor.action_scale.device  # the actor's: observations go there, actions come back
        self._action_scale = actor.action_scale.cpu().numpy()  # Actor.to_env in numpy, converted once
        self._action_bias = actor.action_bias.cpu().numpy()

    def reset(self, seed: "int | list[int] | None" = None) -> None:
        """Start an episode, or a batch of them (`act`) from a list of seeds; a seed (evaluation)
        makes an episode's sampled candidates the same every time, each from its own generator."""
        self.t = 0
        if seed is None:
            return
        seeds = [seed] if isinstance(seed, int) else list(seed)
        self.generator.manual_seed(seeds[0])
        self._generators = [self.generator] + [torch.Generator(device=self.generator.device).manual_seed(s)
                                               for s in seeds[1:]]

    def skip(self) -> None:
        """A step acted by something else (the random warm-up actions): the countdown moves on."""
        self.t += 1

    def tau(self) -> int | None:
        """The horizon at this step of the episode (None: the policy takes no horizon)."""
        if self.horizon is None:
            return None
        return countdown(self.t, self.tau_max) if self.horizon == "countdown" else int(self.horizon)

    @torch.no_grad()
    def __call__(self, obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """The deterministic action in [-1, 1] at this step; advances the episode's step count."""
        tau = self.tau()
        parts = [obs, goal] if tau is None else [obs, goal, [tau / max(self.tau_max, 1)]]
        x = torch.as_tensor(np.concatenate(parts), dtype=torch.float32, device=self.device)[None]
        self.t += 1
        if self.select is not None:
            goal = torch.as_tensor(goal, dtype=torch.float32, device=self.device)[None]
            return self.select(x, goal, self.generator)[0].cpu().numpy()
        return self.actor(x)[0].cpu().numpy()

    @torch.no_grad()
    def act(self, obs: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """The deterministic actions (n, action_dim) of a batch of episodes that started together
        (`reset` with their seeds): one actor call for all of them; with `select`, one call per
        episode, each with its episode's generator. Advances the episodes' step count."""
        tau = self.tau()
        parts = [obs, goals] if tau is None else [obs, goals, np.full((len(obs), 1), tau / max(self.tau_max, 1))]
        x = torch.as_tensor(np.concatenate(parts, axis=1), dtype=torch.float32, device=self.device)
        self.t += 1
        if self.select is None:
            return self.actor(x).cpu().numpy()
        goals = torch.as_tensor(goals, dtype=torch.float32, device=self.device)
        generators = getattr(self, "_generators", [self.generator])
        if len(generators) < len(x):
            raise ValueError(f"{len(x)} episodes but {len(generators)} were started: reset with their seeds")
        return np.concatenate([self.select(x[k : k + 1], goals[k : k + 1], generators[k]).cpu().numpy()
                               for k in range(len(x))])

    def env_action(self, action: np.ndarray) -> np.ndarray:
        """An action in [-1, 1] scaled into the env's box."""
        return action * self._action_scale + self._action_bias
