"""TD3 (Fujimoto, van Hoof & Meger 2018): twin critics, target policy smoothing, delayed updates.

The agent is one small class. It sees a batch of tensors
(`obs`, `goal`, `action`, `reward`, `next_obs`, `terminated`) and knows nothing about
environments, replay or files. Goal-conditioned agents concatenate `goal` to `obs`;
a task without goals passes an empty goal. Actions live in [-1, 1] (see `Actor`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from visgoal.agents.networks import Actor, Critic


@dataclass
class TD3Config:
    """The `td3` section of params.yaml (each key is described in params.schema.json)."""

    hidden: list[int] = field(default_factory=lambda: [64, 64])
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    gamma: float = 0.95
    tau: float = 0.05
    policy_delay: int = 2
    target_noise: float = 0.2
    target_noise_clip: float = 0.5
    exploration: str = "gaussian"
    exploration_noise: float = 0.2
    exploration_noise_final: float = 0.2
    exploration_anneal_steps: int = 0
    ou_theta: float = 0.15
    max_grad_norm: float = 0.0
    normalize_inputs: bool = True
    batch_size: int = 256


def soft_update_params(net: nn.Module, target: nn.Module, tau: float) -> None:
    """Polyak averaging: target <- tau * net + (1 - tau) * target. Buffers (normalizer
    statistics) are copied, not averaged."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(net.parameters()), tau)
        for b, tb in zip(net.buffers(), target.buffers()):
            tb.copy_(b)


@contextlib.contextmanager
def eval_mode(*nets: nn.Module):
    states = [n.training for n in nets]
    for n in nets:
        n.train(False)
    try:
        yield
    finally:
        for n, s in zip(nets, states):
            n.train(s)


class ExplorationNoise:
    """Gaussian or Ornstein-Uhlenbeck action noise whose scale anneals linearly with env steps."""

    def __init__(self, kind: str, action_dim: int, start: float, final: float, anneal_steps: int, theta: float,
                 rng: np.random.Generator):
        if kind not in ("gaussian", "ou"):
            raise ValueError(f"td3.exploration: unknown noise '{kind}' (choose gaussian or ou)")
        self.kind, self.start, self.final, self.anneal_steps, self.theta = kind, start, final, anneal_steps, theta
        self.rng = rng
        self.state = np.zeros(action_dim)

    def scale(self, step: int) -> float:
        if self.anneal_steps <= 0:
            return self.final
        frac = min(step / self.anneal_steps, 1.0)
        return self.start + frac * (self.final - self.start)

    def reset(self) -> None:
        self.state[:] = 0.0

    def sample(self, step: int) -> np.ndarray:
        sigma = self.scale(step)
        white = self.rng.standard_normal(self.state.shape)
        if self.kind == "gaussian":
            return sigma * white
        # OU with dt = 1: temporally correlated noise (DDPG, Lillicrap et al. 2016, section 7).
        self.state += -self.theta * self.state + sigma * white
        return self.state.copy()


class TD3Agent:
    def __init__(self, input_dim: int, action_dim: int, action_low, action_high, cfg: TD3Config,
                 rng: np.random.Generator, device: str = "cpu"):
        self.cfg, self.device = cfg, device
        self.actor = Actor(input_dim, action_dim, cfg.hidden, action_low, action_high, cfg.normalize_inputs).to(device)
        self.critic = self.make_critic(input_dim, action_dim).to(device)
        self.actor_target = Actor(input_dim, action_dim, cfg.hidden, action_low, action_high,
                                  cfg.normalize_inputs).to(device)
        self.critic_target = self.make_critic(input_dim, action_dim).to(device)
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.critic_target.load_state_dict(self.critic.state_dict())
        # fused: one kernel per step instead of a loop over tensors (small nets are overhead-bound)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, fused=True)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr, fused=True)
        self.noise = ExplorationNoise(cfg.exploration, action_dim, cfg.exploration_noise, cfg.exploration_noise_final,
                                      cfg.exploration_anneal_steps, cfg.ou_theta, rng)
        self.num_updates = 0
        # Actor.to_env in numpy, for the acting loop: converted once here, not at every env step.
        self._action_scale = self.actor.action_scale.cpu().numpy()
        self._action_bias = self.actor.action_bias.cpu().numpy()

    def make_critic(self, input_dim: int, action_dim: int) -> nn.Module:
        return Critic(input_dim, action_dim, self.cfg.hidden)

    # --- acting -------------------------------------------------------------------------
    @staticmethod
    def inputs(obs: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return torch.cat([obs, goal], dim=-1)

    def act(self, obs: np.ndarray, goal: np.ndarray, step: int, eval_mode: bool) -> np.ndarray:
        """An action in [-1, 1]; exploration noise unless eval_mode."""
        with torch.no_grad():
            x = torch.as_tensor(np.concatenate([obs, goal]), dtype=torch.float32, device=self.device)
            action = self.actor(x[None])[0].cpu().numpy()
        if not eval_mode:
            action = np.clip(action + self.noise.sample(step), -1.0, 1.0)
        return action

    def env_action(self, action: np.ndarray) -> np.ndarray:
        return action * self._action_scale + self._action_bias

    # --- learning -----------------------------------------------------------------------
    def update_critic(self, x, action, reward, next_x, terminated) -> dict:
        """x, next_x: normalized inputs (obs and goal)."""
        with torch.no_grad():
            # Target policy smoothing (TD3 section 5.3): clipped noise on the target action.
            noise = (torch.randn_like(action) * self.cfg.target_noise).clamp(
                -self.cfg.target_noise_clip, self.cfg.target_noise_clip)
            next_action = (self.actor_target.from_normalized(next_x) + noise).clamp(-1.0, 1.0)
            target_q1, target_q2 = self.critic_target(next_x, next_action)
            # Clipped double Q (section 4.2); a terminal step has no future, a time-limit cut does.
            target_q = reward + self.cfg.gamma * (1.0 - terminated) * torch.min(target_q1, target_q2)
        q1, q2 = self.critic(x, action)
        loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = self._clip(self.critic, "critic")
        self.critic_opt.step()
        return {"losses/critic": loss.item(), "values/q1": q1.mean().item(), "values/q2": q2.mean().item(),
                "values/target_q": target_q.mean().item(), **grad_norm}

    def update_actor(self, x) -> dict:
        q1, _ = self.critic(x, self.actor.from_normalized(x))
        loss = -q1.mean()
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = self._clip(self.actor, "actor")
        self.actor_opt.step()
        return {"losses/actor": loss.item(), **grad_norm}

    def update(self, batch: dict[str, torch.Tensor]) -> dict:
        x, next_x = self.inputs(batch["obs"], batch["goal"]), self.inputs(batch["next_obs"], batch["goal"])
        self.observe(x)
        x, next_x = self.normalize(x), self.normalize(next_x)
        metrics = self.update_critic(x, batch["action"], batch["reward"], next_x, batch["terminated"])
        self.num_updates += 1
        if self.num_updates % self.cfg.policy_delay == 0:  # delayed policy updates (section 5.2)
            metrics.update(self.update_actor(x))
            soft_update_params(self.actor, self.actor_target, self.cfg.tau)
            soft_update_params(self.critic, self.critic_target, self.cfg.tau)
        return metrics

    def observe(self, x: torch.Tensor) -> None:
        """Update the running input statistics (one normalizer, kept in the actor, serves all nets)."""
        self.actor.normalizer.update(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.actor.normalizer(x)

    def _clip(self, net: nn.Module, name: str) -> dict:
        """Optional gradient-norm clipping; reports the norm before clipping."""
        if self.cfg.max_grad_norm > 0:
            return {f"grads/{name}": float(nn.utils.clip_grad_norm_(net.parameters(), self.cfg.max_grad_norm))}
        return {}

    # --- snapshots ----------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "actor_target": self.actor_target.state_dict(), "critic_target": self.critic_target.state_dict(),
                "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                "noise_state": self.noise.state.copy(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict) -> None:
        for name in ("actor", "critic", "actor_target", "critic_target", "actor_opt", "critic_opt"):
            getattr(self, name).load_state_dict(state[name])
        self.noise.state[:] = state["noise_state"]
        self.num_updates = state["num_updates"]
