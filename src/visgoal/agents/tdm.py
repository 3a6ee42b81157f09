"""Temporal Difference Models on latents (Pong et al. 2018; the image-TDM report, sections 3-4).

The critic predicts f(z, a, z_g, tau), the latent reached after tau steps when trying
to reach z_g, and Q = -|f - z_g|: per dimension ("vectorized", report equation 5) or as
one p-norm. No discount: the horizon tau carries time instead.

    target = -|z' - z_g|                                              if tau = 0
           = min_i Q_i'(z', pi'(z', z_g, tau - 1), z_g, tau - 1)      otherwise

Inputs are [z, z_g, tau / tau_max]. The agent is TD3 (twin critics, target smoothing,
delayed actor) with a vector-valued critic; the actor maximises the summed Q.

Acting (report section 3.2, Algorithm 1): the policy's horizon input counts down during
rollouts (tau_max, ..., 0, tau_max, ...) and is `tdm.eval_tau` on real goals; with
`action_selection: argmax` the action maximises Q over sampled candidates (equation 4).
Everything else (latents, imagined goals, fine-tuning) is RIG's (agents/rig.py), which the
report builds on.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from visgoal.agents.actor import load_actor
from visgoal.agents.networks import Critic
from visgoal.agents.policy import Policy
from visgoal.agents.rig import RIGAgent, image_td3_config
from visgoal.agents.td3 import TD3Config
from visgoal.config import Section
from visgoal.device import resolve


class TDMConfig(Section):
    """The `tdm` section of params.yaml, less the relabelling mixture."""

    section = "tdm"
    leave_out = ("relabel",)


def tdm_distance(f: torch.Tensor, goal: torch.Tensor, cfg: TDMConfig) -> torch.Tensor:
    """Q from a predicted latent: (n, d) per dimension, or (n,) for a p-norm."""
    if cfg.distance == "vectorized":
        return -(f - goal).abs()
    return -torch.linalg.vector_norm(f - goal, ord=cfg.norm_p, dim=-1)


def total(q: torch.Tensor) -> torch.Tensor:
    """One value per sample: the sum over dimensions of a vectorized Q, a p-norm Q as is."""
    return q.sum(-1) if q.ndim == 2 else q


def tau_input(tau: torch.Tensor, tau_max: int) -> torch.Tensor:
    return (tau.float() / max(tau_max, 1)).unsqueeze(-1)


def horizon_hook(tau_max: int):
    """A replay batch hook: tau uniform in {0..tau_max} (TDM relabelling, Pong et al. 2018)."""

    def add_tau(batch: dict, rng: np.random.Generator) -> dict:
        batch["tau"] = rng.integers(0, tau_max + 1, size=len(batch["action"])).astype(np.float32)
        return batch

    return add_tau


@torch.no_grad()
def argmax_action(actor: nn.Module, critic: nn.Module, x: torch.Tensor, goal: torch.Tensor, cfg: TDMConfig,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """argmax over {pi(x)} U {candidates ~ U[-1, 1]} of Q1(x, a) (report equation 4), for one input x (1, D)."""
    xn = actor.normalizer(x)
    policy_action = actor.from_normalized(xn)
    action_dim = policy_action.shape[-1]
    # drawn where the generator is (a policy's, on the CPU: the same candidates on any device)
    where = generator.device if generator is not None else x.device
    sampled = (torch.rand(cfg.candidates, action_dim, generator=generator, device=where) * 2 - 1).to(x.device)
    actions = torch.cat([policy_action, sampled])
    q1, _ = critic(xn.expand(len(actions), -1), actions)
    q = total(tdm_distance(q1, goal.expand(len(actions), -1), cfg))
    return actions[q.argmax()][None]


class TDMAgent(RIGAgent):
    name = "tdm"

    def __init__(self, latent_dim: int, action_dim: int, action_low, action_high, cfg: TD3Config,
                 tdm: TDMConfig, rng: np.random.Generator, obs_dim: int | None = None, device: str = "cpu"):
        if tdm.distance not in ("vectorized", "norm"):
            raise ValueError(f"tdm.distance: unknown '{tdm.distance}' (choose vectorized or norm)")
        if tdm.action_selection not in ("policy", "argmax"):
            raise ValueError(f"tdm.action_selection: unknown '{tdm.action_selection}' (choose policy or argmax)")
        if tdm.eval_tau > tdm.tau_max:
            raise ValueError(f"tdm.eval_tau={tdm.eval_tau} exceeds tdm.tau_max={tdm.tau_max}; lower it or raise tau_max")
        self.tdm, self.latent_dim = tdm, latent_dim
        super().__init__((obs_dim or latent_dim) + latent_dim + 1, action_dim, action_low, action_high, cfg, rng,
                         device)
        self.generator = torch.Generator().manual_seed(int(rng.integers(2**31)))  # rollouts' argmax candidates

    @classmethod
    def build(cls, params, view, action_low, action_high, rng: np.random.Generator) -> "TDMAgent":
        agent = cls(view.goal_dim, len(action_low), action_low, action_high, image_td3_config(params),
                    TDMConfig.from_params(params["tdm"]), rng, obs_dim=view.obs_dim, device=resolve(params["device"]))
        agent.configure(params)
        return agent

    def replay_options(self, params, view) -> dict:
        return {**super().replay_options(params, view), "batch_hook": horizon_hook(self.tdm.tau_max)}

    def make_critic(self, input_dim: int, action_dim: int) -> nn.Module:
        return Critic(input_dim, action_dim, self.cfg.hidden, out_dim=self.latent_dim)

    # --- acting -------------------------------------------------------------------------
    def policy(self, training: bool) -> Policy:
        """The countdown during rollouts, `eval_tau` on real goals."""
        return self.make_policy(self.acting(training), self.critic, self.tdm, training, self.generator)

    @staticmethod
    def make_policy(actor: nn.Module, critic: nn.Module | None, tdm: TDMConfig, training: bool,
                    generator: torch.Generator | None = None) -> Policy:
        select = None
        if tdm.action_selection == "argmax":
            def select(x, goal, gen):
                return argmax_action(actor, critic, x, goal, tdm, gen)
        return Policy(actor, "countdown" if training else tdm.eval_tau, tdm.tau_max, select, generator)

    # --- learning -----------------------------------------------------------------------
    def q(self, f: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return tdm_distance(f, goal, self.tdm)

    def update(self, batch: dict[str, torch.Tensor]) -> dict:
        obs, next_obs, goal, tau = batch["obs"], batch["next_obs"], batch["goal"], batch["tau"]
        next_z = batch["next_achieved"]  # the latent reached (the observation may add its velocity)
        x = torch.cat([obs, goal, tau_input(tau, self.tdm.tau_max)], dim=-1)
        next_x = torch.cat([next_obs, goal, tau_input((tau - 1).clamp_min(0), self.tdm.tau_max)], dim=-1)
        self.update_normalizer(x)
        x, next_x = self.normalize(x), self.normalize(next_x)
        metrics = self.update_critic(x, batch["action"], goal, next_x, next_z, tau, batch["terminated"])
        self.num_updates += 1
        if self.num_updates % self.cfg.policy_delay == 0:
            metrics.update(self.update_actor(x, goal, batch["action"], batch.get("demo")))
            self.update_targets()
        return metrics

    def targets(self, goal, next_x, next_z, tau, terminated) -> torch.Tensor:
        """The TDM target: the reached distance at tau = 0, the bootstrapped one at tau - 1 otherwise.
        A terminal state is absorbing (TD3Agent.update_critic): the agent stays where it fell, so
        the distance it reached is the distance at every horizon."""
        with torch.no_grad():
            noise = (torch.randn(len(next_x), self.actor.net[-1].out_features, device=next_x.device)
                     * self.cfg.target_noise).clamp(
                -self.cfg.target_noise_clip, self.cfg.target_noise_clip)
            next_action = (self.actor_target.from_normalized(next_x) + noise).clamp(-1.0, 1.0)
            f1, f2 = self.critic_target(next_x, next_action)
            bootstrap = torch.min(self.q(f1, goal), self.q(f2, goal))
            reached = self.q(next_z, goal)
            rows = (-1, *([1] * (reached.ndim - 1)))
            return torch.where((terminated > 0).view(rows) | (tau == 0).view(rows), reached, bootstrap)

    def update_critic(self, x, action, goal, next_x, next_z, tau, terminated) -> dict:
        target = self.targets(goal, next_x, next_z, tau, terminated)
        f1, f2 = self.critic(x, action)
        q1, q2 = self.q(f1, goal), self.q(f2, goal)
        loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        metrics = self._clip(self.critic, "critic")
        self.critic_opt.step()
        return {"losses/critic": loss.item(), "values/q1": total(q1).mean().item(),
                "values/q2": total(q2).mean().item(), "values/target_q": total(target).mean().item(), **metrics}

    def actor_value(self, x: torch.Tensor, action: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """-(the summed distance) Q1 predicts at the input's horizon (report eq. 3)."""
        return total(self.q(self.critic.first(x, action), goal))

    def cautious_value(self, x: torch.Tensor, action: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return torch.min(*(total(self.q(f, goal)) for f in self.critic(x, action)))

    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])

    # --- policy.pt ------------------------------------------------------------------------
    def policy_file(self) -> dict:
        saved = super().policy_file()
        saved["meta"]["tdm"] = self.tdm.as_dict()
        saved["meta"]["latent_dim"] = self.latent_dim
        if self.tdm.action_selection == "argmax":
            saved["critic"] = self.critic.state_dict()
        return saved

    @classmethod
    def load_policy(cls, saved: dict, device: str = "cpu") -> Policy:
        meta, critic = saved["meta"], None
        tdm = TDMConfig(**{key: meta["tdm"][key] for key in TDMConfig.keys() if key in meta["tdm"]})  # none retired
        if "critic" in saved:
            critic = Critic(meta["input_dim"], meta["action_dim"], meta["hidden"], out_dim=meta["latent_dim"])
            critic.load_state_dict(saved["critic"])
            critic.to(device).eval()
        return cls.make_policy(load_actor(saved, device), critic, tdm, training=False)
