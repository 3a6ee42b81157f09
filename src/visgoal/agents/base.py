"""The agent interface: every call the Workspace (agents/workspace.py) and evaluation make of a method.

A method is one class that answers these. The defaults are those of a method with nothing to
learn, so each answers only what is its own:

  building  `view_kind` (what it sees: state, latent or pixels), `pursues_goal`, `build`, and
            `replay_options` (its replay's relabelling and reward)
  acting    `start_episode`, `exploration_goal` (and `explores_env_goals`), `policy`, `explore`
  learning  `batch_keys` and `batch_size` (what one update reads), `update`, `after_episode`
  files     `state_dict`/`load_state_dict` (its part of a checkpoint), `policy_file`/`load_policy`
            (policy.pt: what evaluation acts with)

A method with no training (a scripted teacher) reads no batch (`batch_keys` empty), so the
Workspace never samples its replay or calls `update`; it answers `build`, `policy`,
`policy_file` and `load_policy`. An offline method (behaviour cloning) answers `update` and the
files, and takes its batches from demonstrations rather than from its own `explore`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from visgoal.agents.policy import Policy
from visgoal.agents.replay import no_reward


class Agent(ABC):
    name = ""         # its params.yaml section and `--method`
    view = "state"    # what it sees by default: "state" (StateView), "latent" (LatentView) or "pixels" (PixelView)
    batch_keys: tuple[str, ...] = ()   # what `update` reads of a replay batch; none: it never updates
    batch_size = 0    # replay rows per update
    offline = False   # learns from demonstrations alone (gcbc): the Workspace never steps its env for it
    bc_weight = 0.0   # learning from demonstrations: the Q-filtered BC term's weight (agents/demonstrations.py)
    q_filter = True   # ... and whether the term keeps only the rows whose action the critic prefers

    # --- building -------------------------------------------------------------------------
    @classmethod
    def view_kind(cls, params) -> str:
        """What the agent sees with these parameters (a method may offer more than one `view`)."""
        return cls.view

    @classmethod
    def pursues_goal(cls, params, env: str) -> bool:
        """Whether it learns to reach the goal (on the state, a method may learn the env's own reward)."""
        return True

    @classmethod
    @abstractmethod
    def build(cls, params, view, action_low, action_high, rng: np.random.Generator) -> "Agent":
        """The agent for a view, from the resolved params, on their `device` (its networks, and the
        batches `update` is given)."""

    def replay_options(self, params, view) -> dict:
        """The replay's relabelling mixture and reward function (EpisodeReplay's keyword arguments)."""
        return {"relabel": {}, "reward_fn": no_reward}

    @classmethod
    def reads_demos(cls, params) -> bool:
        """Whether its training reads the env's demonstrations (demos.h5, `train --demos`): an offline
        method always, any other that learns (`batch_keys`) where `demo_learning.enabled`."""
        return cls.offline or bool(params["demo_learning"]["enabled"] and cls.batch_keys)

    # --- acting ---------------------------------------------------------------------------
    def start_episode(self) -> None:
        """A training episode begins (exploration noise restarts)."""

    def exploration_goal(self, view, step, rng: np.random.Generator) -> np.ndarray:
        """The goal pursued in a training episode: the env's own."""
        return view.goal(step)

    def explores_env_goals(self) -> bool:
        """Whether `exploration_goal` is the env's goal, so that a training episode's true success means something."""
        return True

    @abstractmethod
    def policy(self, training: bool) -> Policy:
        """What acts: in training rollouts (`explore` is applied to its action) or in evaluations."""

    def explore(self, action: np.ndarray, step: int) -> np.ndarray:
        """A rollout's action from the policy's (TD3's adds noise)."""
        return action

    # --- learning -------------------------------------------------------------------------
    def update(self, batch: dict) -> dict:
        """One gradient update on a batch of `batch_keys`; returns metrics to log."""
        return {}

    def after_episode(self, view, replay, episodes: int, learning: bool, rng: np.random.Generator) -> dict:
        """Called after each stored episode (RIG fine-tunes its VAE here); returns metrics to log."""
        return {}

    # --- files ----------------------------------------------------------------------------
    def nets(self) -> tuple[str, ...]:
        """The attributes a checkpoint carries, each with its own state_dict (networks, optimizers)."""
        return ()

    def state_dict(self) -> dict:
        """Its part of a resumable checkpoint: every net's state, and what a method adds."""
        return {name: getattr(self, name).state_dict() for name in self.nets()}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` saved."""
        for name in self.nets():
            getattr(self, name).load_state_dict(state[name])

    @abstractmethod
    def policy_file(self) -> dict:
        """policy.pt's content: the weights of what evaluations act with, and a `meta` to rebuild it."""

    @classmethod
    @abstractmethod
    def load_policy(cls, saved: dict, device: str = "cpu") -> Policy:
        """The evaluation policy of a `policy_file`, acting on `device` (whatever device trained it)."""
