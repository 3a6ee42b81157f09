"""Contrastive RL (Eysenbach, Zhang, Salakhutdinov & Levine 2022) on VAE latents: no reward at all.

The critic is f(s, a, g) = phi(s, a) . psi(g) / sqrt(d) (section 4, "contrastive RL (NCE)"),
trained with binary NCE: for a batch of (s_i, a_i, g_i), g_i is a positive for row i and every
other g_j a negative, so the logits matrix should be high on its diagonal and low elsewhere
(section 4.2). The positive g_i is the latent reached k steps after (s_i, a_i) in the same
episode, k ~ Geometric(1 - gamma) (the discounted state occupancy of section 3), at most the
episode's last step: the replay's `geometric` relabelling, the only one. There is no reward, no
target critic and no reward relabelling. Twin critics, as the reference implementations use.

The actor is deterministic (TD3's, with its exploration noise and its input normalizer) and
maximizes min_e f_e(s, pi(s, g), g) over the batch's positive goals (section 4.3), divided by
the mean |f| so that the loss scale does not depend on the logits' (OGBench's DDPG objective).
Latents, imagined exploration goals and fine-tuning are RIG's (agents/rig.py); the critic
replaces everything TD3 learns with rewards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from visgoal.agents.networks import frozen, mlp
from visgoal.agents.replay import negative_distance
from visgoal.agents.rig import RIGAgent, image_td3_config
from visgoal.agents.td3 import TD3Config


@dataclass
class CRLConfig:
    """The `crl` section of params.yaml."""

    discount: float = 0.99
    repr_dim: int = 64
    hidden: tuple = (256, 256)

    @classmethod
    def from_params(cls, section: dict) -> "CRLConfig":
        return cls(**{f.name: section[f.name] for f in fields(cls)})


class ContrastiveCritic(nn.Module):
    """Twin (phi_e, psi_e): logits[e, i, j] = phi_e(s_i, a_i) . psi_e(g_j) / sqrt(d)."""

    def __init__(self, obs_dim: int, action_dim: int, goal_dim: int, hidden: list[int], repr_dim: int):
        super().__init__()
        self.phi = nn.ModuleList(mlp(obs_dim + action_dim, list(hidden), repr_dim) for _ in range(2))
        self.psi = nn.ModuleList(mlp(goal_dim, list(hidden), repr_dim) for _ in range(2))
        self.scale = 1.0 / math.sqrt(repr_dim)

    def representations(self, obs, action, goal) -> tuple[torch.Tensor, torch.Tensor]:
        """(phi, psi), each (2, n, d)."""
        sa = torch.cat([obs, action], dim=-1)
        return torch.stack([phi(sa) for phi in self.phi]), torch.stack([psi(goal) for psi in self.psi])

    def logits(self, obs, action, goal) -> torch.Tensor:
        """(2, n, n): every state-action of the batch against every goal of it."""
        phi, psi = self.representations(obs, action, goal)
        return torch.einsum("eik,ejk->eij", phi, psi) * self.scale

    def forward(self, obs, action, goal) -> torch.Tensor:
        """(2, n): f_e(s_i, a_i, g_i), each row against its own goal only."""
        phi, psi = self.representations(obs, action, goal)
        return (phi * psi).sum(-1) * self.scale


class CRLAgent(RIGAgent):
    name = "crl"

    def __init__(self, obs_dim: int, goal_dim: int, action_dim: int, action_low, action_high, cfg: TD3Config,
                 crl: CRLConfig, rng: np.random.Generator):
        self.crl, self.obs_dim, self.goal_dim = crl, obs_dim, goal_dim
        super().__init__(obs_dim + goal_dim, action_dim, action_low, action_high, cfg, rng)

    @classmethod
    def build(cls, params, view, action_low, action_high, rng: np.random.Generator) -> "CRLAgent":
        agent = cls(view.obs_dim, view.goal_dim, len(action_low), action_low, action_high, image_td3_config(params),
                    CRLConfig.from_params(params["crl"]), rng)
        agent.configure(params)
        return agent

    def make_critic(self, input_dim: int, action_dim: int) -> nn.Module:
        return ContrastiveCritic(self.obs_dim, action_dim, self.goal_dim, list(self.crl.hidden), self.crl.repr_dim)

    def replay_options(self, params, view) -> dict:
        """Every goal is a geometric future latent; the reward is never used (kept for the replay's API)."""
        return {"relabel": {"geometric": 1.0}, "reward_fn": negative_distance, "goal_sampler": view.sample_prior,
                "geometric_discount": self.crl.discount}

    # --- learning -----------------------------------------------------------------------
    def update(self, batch: dict[str, torch.Tensor]) -> dict:
        x = self.inputs(batch["obs"], batch["goal"])
        self.update_normalizer(x)
        x = self.normalize(x)  # one normalizer for the actor's input; the critic reads its two halves
        obs, goal = x[:, : self.obs_dim], x[:, self.obs_dim :]
        metrics = self.update_contrastive(obs, batch["action"], goal)
        metrics.update(self.update_crl_actor(x, obs, goal))
        self.num_updates += 1
        return metrics

    def update_contrastive(self, obs, action, goal) -> dict:
        logits = self.critic.logits(obs, action, goal)
        labels = torch.eye(len(obs)).expand_as(logits)
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = self._clip(self.critic, "critic")
        self.critic_opt.step()
        with torch.no_grad():
            mean = logits.mean(0)
            diagonal = torch.diagonal(mean)
            accuracy = (mean.argmax(1) == torch.arange(len(mean))).float().mean()
            off = (mean.sum() - diagonal.sum()) / max(mean.numel() - len(mean), 1)
        return {"losses/contrastive": loss.item(), "critic/accuracy": accuracy.item(),
                "critic/logits_positive": diagonal.mean().item(), "critic/logits_negative": off.item(),
                "critic/logits_scale": mean.abs().mean().item(), **grad_norm}

    def update_crl_actor(self, x, obs, goal) -> dict:
        with frozen(self.critic):
            q = self.critic(obs, self.actor.from_normalized(x), goal).min(0).values
            loss = -q.mean() / (q.abs().mean().detach() + 1e-6)
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = self._clip(self.actor, "actor")
        self.actor_opt.step()
        return {"losses/actor": loss.item(), "values/q": q.mean().item(), **grad_norm}
