"""TD3 (Fujimoto, van Hoof & Meger 2018): twin critics, target policy smoothing, delayed updates.

The state-based oracle: the simulator's state and the true goal vector (StateView), the
dense reward -||achieved' - g|| with HER relabelling (Andrychowicz et al. 2017, section 3.4),
or the env's own reward where the goal is not the task (`oracle_reward: env` in envs/<env>.yaml). The
image-based TDM report's section 6.2 uses it as its baseline.

The agent is one small class. It sees a batch of tensors
(`obs`, `goal`, `action`, `reward`, `next_obs`, `terminated`) and knows nothing about
environments, replay or files. Goal-conditioned agents concatenate `goal` to `obs`;
a task without goals passes an empty goal. Actions live in [-1, 1] (see `Actor`).

It answers the agent interface (agents/base.py); RIG and TDM are TD3 and extend it. Its actor's
optimizer step, averaged copy and exploration noise are the shared parts of agents/actor.py.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from visgoal.agents.actor import (ActorTrainer, ExplorationNoise, OwnsActor, actor_file, clip_gradients, load_actor,
                                  soft_update_params)
from visgoal.agents.base import Agent
from visgoal.agents.demonstrations import q_filtered_bc
from visgoal.agents.networks import Actor, Critic, frozen
from visgoal.agents.policy import Policy
from visgoal.agents.replay import env_reward, negative_distance
from visgoal.config import Section
from visgoal.device import resolve


class TD3Config(Section):
    """The `td3` section of params.yaml (each key is described in params.schema.json)."""

    section = "td3"


class TD3Agent(OwnsActor, Agent):
    name = "td3"    # its params.yaml section and `--method`
    view = "state"  # what it sees: "state" (StateView), "latent" (LatentView) or "pixels" (PixelView)
    batch_keys = ("obs", "next_obs", "next_achieved", "goal", "action", "reward", "terminated", "tau")  # what update reads

    def __init__(self, input_dim: int, action_dim: int, action_low, action_high, cfg: TD3Config,
                 rng: np.random.Generator, device: str = "cpu", terminal_keeps_reward: bool = False):
        """`terminal_keeps_reward`: the reward is a goal distance, which a terminal state keeps
        forever (see `update_critic`); otherwise (the env's own reward) a terminal state pays nothing more."""
        self.cfg, self.device, self.terminal_keeps_reward = cfg, device, terminal_keeps_reward
        self.actor = Actor(input_dim, action_dim, cfg.hidden, action_low, action_high, cfg.normalize_inputs).to(device)
        self.critic = self.make_critic(input_dim, action_dim).to(device)
        self.actor_target = Actor(input_dim, action_dim, cfg.hidden, action_low, action_high,
                                  cfg.normalize_inputs).to(device)
        self.critic_target = self.make_critic(input_dim, action_dim).to(device)
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.trainer = ActorTrainer(self.actor, cfg.actor_lr, cfg.max_grad_norm, cfg.actor_average)
        # fused: one kernel per step instead of a loop over tensors (small nets are overhead-bound)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr, fused=True)
        self.noise = ExplorationNoise.from_config(cfg, action_dim, rng)
        self.num_updates = 0

    @property
    def batch_size(self) -> int:
        return self.cfg.batch_size


    @classmethod
    def pursues_goal(cls, params, env: str) -> bool:
        """Whether it learns to reach the goal: TD3 learns the env's own reward instead where the goal
        is not the task (`oracle_reward: env` in envs/<env>.yaml: inverted_pendulum)."""
        from visgoal.envs import load_spec

        return load_spec(env).oracle_reward == "goal"

    @classmethod
    def build(cls, params, view, action_low, action_high, rng: np.random.Generator) -> "TD3Agent":
        """The agent for a view, from params.yaml's sections."""
        return cls(view.obs_dim + view.goal_dim, len(action_low), action_low, action_high,
                   TD3Config.from_params(params["td3"]), rng, resolve(params["device"]),
                   terminal_keeps_reward=view.goal_conditioned)

    def make_critic(self, input_dim: int, action_dim: int) -> nn.Module:
        return Critic(input_dim, action_dim, self.cfg.hidden)

    # --- the agent interface ----------------------------------------------------------------
    def replay_options(self, params, view) -> dict:
        """The replay's relabelling mixture and reward: HER's future goals and -distance, or no
        goal and the env's own reward."""
        if not view.goal_conditioned:
            return {"relabel": {}, "reward_fn": env_reward}
        return {"relabel": params["replay"]["relabel"], "reward_fn": negative_distance}

    def start_episode(self) -> None:
        self.noise.reset()

    def policy(self, training: bool) -> Policy:
        """What acts: the actor (training adds `explore`'s noise to it)."""
        return Policy(self.acting(training))

    def explore(self, action: np.ndarray, step: int) -> np.ndarray:
        """The policy's action plus exploration noise, kept in [-1, 1]."""
        return self.noise.explore(action, step)

    @staticmethod
    def inputs(obs: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return torch.cat([obs, goal], dim=-1)

    # --- learning -----------------------------------------------------------------------
    def update_critic(self, x, action, reward, next_x, terminated) -> dict:
        """x, next_x: normalized inputs (obs and goal)."""
        with torch.no_grad():
            # Target policy smoothing (TD3 section 5.3): clipped noise on the target action.
            noise = (torch.randn_like(action) * self.cfg.target_noise).clamp(
                -self.cfg.target_noise_clip, self.cfg.target_noise_clip)
            next_action = (self.actor_target.from_normalized(next_x) + noise).clamp(-1.0, 1.0)
            target_q1, target_q2 = self.critic_target(next_x, next_action)
            future = torch.min(target_q1, target_q2)  # clipped double Q (section 4.2)
            # A time-limit cut has a future (bootstrapped); a terminal state is absorbing: no action
            # leaves it, so its value is what it pays forever. For the env's own reward that is
            # nothing (the pendulum's alive bonus stops). For a goal distance it is the distance the
            # state keeps forever, -d/(1 - gamma): it stays where it fell, and so does its distance
            # to any goal. Bootstrapping instead would value the fallen state by Q(s_fallen, .),
            # which no transition ever trains, and zero (the standard done mask) would make a fall
            # worth more than every step of -d it cuts short: with negative distances, ending early
            # would look cheap.
            absorbed = reward / (1.0 - self.cfg.gamma) if self.terminal_keeps_reward else torch.zeros_like(reward)
            target_q = reward + self.cfg.gamma * torch.where(terminated > 0, absorbed, future)
            if self.cfg.clip_target and self.terminal_keeps_reward:  # no -distance sums to more than 0
                target_q = target_q.clamp(max=0.0)
        q1, q2 = self.critic(x, action)
        loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = self._clip(self.critic, "critic")
        self.critic_opt.step()
        return {"losses/critic": loss.item(), "values/q1": q1.mean().item(), "values/q2": q2.mean().item(),
                "values/target_q": target_q.mean().item(), **grad_norm}

    def actor_value(self, x: torch.Tensor, action: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """What the actor maximizes, per row: Q1 (TD3 section 4.2)."""
        return self.critic.first(x, action)

    def cautious_value(self, x: torch.Tensor, action: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """What the Q-filter compares, per row: the smaller twin (clipped double Q), since the actor's
        own action is the one Q1 was pushed up for."""
        return torch.min(*self.critic(x, action))

    def update_actor(self, x, goal=None, demo_action=None, demo=None) -> dict:
        """The actor's step on normalized inputs x; with demonstration rows (`demo` 1, their actions
        `demo_action`), the Q-filtered behaviour cloning of agents/demonstrations.py beside it."""
        with frozen(self.critic):
            action = self.actor.from_normalized(x)
            q = self.actor_value(x, action, goal)
            if demo is None:
                loss, metrics = -q.mean(), {}
            else:
                with torch.no_grad():
                    q_demo, q_own = self.cautious_value(x, demo_action, goal), self.cautious_value(x, action, goal)
                if not self.q_filter:  # every demonstration row cloned
                    q_demo, q_own = torch.ones_like(q_demo), torch.zeros_like(q_own)
                bc, kept = q_filtered_bc(action, demo_action, q_demo, q_own, demo)
                loss = -q.mean() / (q.abs().mean().detach() + 1e-6) + self.bc_weight * bc
                metrics = {"losses/bc": bc.item(), "demos/q_filter_kept": kept.item()}
        return {"losses/actor": loss.item(), **metrics, **self.actor_step(loss)}

    def update(self, batch: dict[str, torch.Tensor]) -> dict:
        x, next_x = self.inputs(batch["obs"], batch["goal"]), self.inputs(batch["next_obs"], batch["goal"])
        self.update_normalizer(x)
        x, next_x = self.normalize(x), self.normalize(next_x)
        metrics = self.update_critic(x, batch["action"], batch["reward"], next_x, batch["terminated"])
        self.num_updates += 1
        if self.num_updates % self.cfg.policy_delay == 0:  # delayed policy updates (section 5.2)
            metrics.update(self.update_actor(x, batch["goal"], batch["action"], batch.get("demo")))
            self.update_targets()
        return metrics

    def update_targets(self) -> None:
        soft_update_params(self.actor, self.actor_target, self.cfg.polyak)
        soft_update_params(self.critic, self.critic_target, self.cfg.polyak)

    def update_normalizer(self, x: torch.Tensor) -> None:
        """Update the running input statistics (one normalizer, kept in the actor, serves all nets)."""
        self.actor.normalizer.update(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.actor.normalizer(x)

    def _clip(self, net: nn.Module, name: str) -> dict:
        return clip_gradients(net, self.cfg.max_grad_norm, name)

    # --- snapshots ----------------------------------------------------------------------
    def nets(self) -> tuple[str, ...]:
        """The attributes a checkpoint carries, each with its own state_dict."""
        return (("actor", "critic", "actor_target", "critic_target", "actor_opt", "critic_opt")
                + (("averaged_actor",) if self.averaged_actor is not None else ()))

    def state_dict(self) -> dict:
        return {**super().state_dict(), "noise_state": self.noise.state.copy(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.noise.state[:] = state["noise_state"]
        self.num_updates = state["num_updates"]

    # --- policy.pt ------------------------------------------------------------------------
    def policy_file(self) -> dict:
        """The weights of what evaluations act with (`acting`) and what it takes to rebuild it (the
        Workspace adds the run's meta)."""
        return actor_file(self.actor, self.acting(training=False), self.cfg.hidden, self.cfg.normalize_inputs)

    @classmethod
    def load_policy(cls, saved: dict, device: str = "cpu") -> Policy:
        """The deterministic policy of a `policy_file`, for evaluation."""
        return Policy(load_actor(saved, device))
