"""Contrastive RL (Eysenbach, Zhang, Salakhutdinov & Levine 2022) from images: no reward at all.

The critic is f(s, a, g) = phi(s, a) . psi(g) / sqrt(d) (section 4): for a batch of
(s_i, a_i, g_i), g_i is a positive for row i and every other g_j a negative, so the logits matrix
should be high on its diagonal and low elsewhere (section 4.2). `crl.loss: infonce` is the paper's
"contrastive RL (CPC)", InfoNCE (each row's softmax cross-entropy over the batch's goals, with the
reference's 0.01 logsumexp^2 penalty). The positive g_i is what the camera shows k steps after (s_i, a_i) in the same
episode, k ~ Geometric(1 - gamma) (the discounted state occupancy of section 3), at most the
episode's last step: the replay's `geometric` relabelling, the only one. There is no reward, no
target critic and no reward relabelling. Twin critics, as the reference implementations use.

It learns the occupancy of the data's own futures, a Monte Carlo estimate over whatever
policies collected them. The other loss, `td_infonce` (Zheng, Salakhutdinov & Eysenbach 2023), learns the
current goal-conditioned policy's by temporal difference: phi also reads the commanded goal, and a
target critic at the next state labels the future (`update_td_infonce`). Where crl reaches a goal
and leaves it again (point_maze), the data's futures go on past the goal; the policy's own
future, once it holds, stays there.

The actor (`crl.policy`) is deterministic (TD3's, with its exploration noise) or, as the reference
does on images, a tanh-squashed Gaussian that explores by sampling. It maximizes
min_e f_e(s, pi(s, g), g), divided by the mean |f| so that the loss scale does not depend on the
logits' (OGBench's DDPG objective). The Gaussian also gets SAC's
entropy bonus alpha * H beside its objective, alpha tuned so that the entropy stays near
`crl.target_entropy` (the reference's 0 on images). With `actor_random_goals` it sees every
state twice, with its own goal and with the next row's (the reference's `random_goals=0.5`), so
that it also learns to head for goals its state does not lead to. Exploration pursues the env's
goal images (`exploration_goals: env`, as in the paper) or, on latents, RIG's imagined goals.

Two representations (`crl.representation`), both from the camera image alone:
  latent  phi, psi and the actor read the VAE's latents (LatentView, RIG's fine-tuning included)
  pixels  a convolutional encoder reads the images (PixelView; no VAE): the DQN torso (Mnih et
          al. 2015), as the reference's image networks, then Linear, LayerNorm and tanh. Only the
          contrastive loss trains it (td_infonce: a Monte Carlo head's too); the actor reads its
          features detached (DrQ-v2). Both the observations and the goals get DrQ's random
          shifts (Yarats et al. 2021): pad `shift` pixels by replicating the border, crop back at a
          random offset, per image.
and a diagnostic, not an image agent:
  state   the simulator's state and goal vector (StateView), as the td3 oracle sees them: where
          crl fails from images, this tells the representation's share from the rest.
"""

from __future__ import annotations

import copy
import math
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from visgoal.agents.actor import (ActorTrainer, ExplorationNoise, OwnsActor, actor_file, clip_gradients,
                                  load_actor, soft_update_params)
from visgoal.agents.base import Agent
from visgoal.agents.demonstrations import q_filtered_bc
from visgoal.agents.encoders import ConvEncoder, PixelActor, encoded_actor, random_shift, with_encoder
from visgoal.agents.networks import Actor, GaussianActor, frozen, mlp
from visgoal.agents.policy import Policy
from visgoal.agents.replay import no_reward
from visgoal.agents.rig import LatentGoals, image_td3_config
from visgoal.agents.td3 import TD3Config
from visgoal.config import Section
from visgoal.device import resolve

REPRESENTATIONS = ("latent", "pixels", "state")
POLICIES = ("deterministic", "gaussian")
LOSSES = ("infonce", "td_infonce")


class CRLConfig(Section):
    """The `crl` section of params.yaml."""

    section = "crl"


class ContrastiveCritic(nn.Module):
    """Twin (phi_e, psi_e): logits[e, i, j] = phi_e(s_i, a_i) . psi_e(g_j) / sqrt(d). With a
    `command_dim`, phi also reads the goal the policy is commanded (TD InfoNCE's phi(s, a, c)): the
    future it predicts is the goal-conditioned policy's own."""

    def __init__(self, obs_dim: int, action_dim: int, goal_dim: int, hidden: list[int], repr_dim: int,
                 command_dim: int = 0):
        super().__init__()
        self.phi = nn.ModuleList(mlp(obs_dim + action_dim + command_dim, list(hidden), repr_dim) for _ in range(2))
        self.psi = nn.ModuleList(mlp(goal_dim, list(hidden), repr_dim) for _ in range(2))
        self.scale = 1.0 / math.sqrt(repr_dim)

    def representations(self, obs, action, goal) -> tuple[torch.Tensor, torch.Tensor]:
        """(phi, psi), each (2, n, d)."""
        return self.state_action(obs, action), self.goal(goal)

    def state_action(self, obs, action, command=None) -> torch.Tensor:
        sa = torch.cat([obs, action] if command is None else [obs, action, command], dim=-1)
        return torch.stack([phi(sa) for phi in self.phi])

    def pairs(self, phi: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        """(2, n, m) logits of every phi row against every psi row."""
        return torch.einsum("eik,ejk->eij", phi, psi) * self.scale

    def goal(self, goal) -> torch.Tensor:
        return torch.stack([psi(goal) for psi in self.psi])

    def forward(self, obs, action, goal) -> torch.Tensor:
        """(2, n): f_e(s_i, a_i, g_i), each row against its own goal only."""
        phi, psi = self.representations(obs, action, goal)
        return (phi * psi).sum(-1) * self.scale


class Temperature(nn.Module):
    """SAC's entropy weight alpha = exp(log_alpha), learned (Haarnoja et al. 2018, section 5)."""

    def __init__(self):
        super().__init__()
        self.log_alpha = nn.Parameter(torch.zeros(()))  # alpha 1 at first, as the reference's

    def forward(self) -> torch.Tensor:
        return self.log_alpha.exp()


@torch.no_grad()
def logit_metrics(logits: torch.Tensor) -> dict:
    """What MLflow shows of the twins' (2, n, n) logits, row i's positive in column i: how often it
    is the row's largest, the mean positive and negative logits, and their scale."""
    mean = logits.mean(0)
    diagonal = torch.diagonal(mean)
    accuracy = (mean.argmax(1) == torch.arange(len(mean), device=mean.device)).float().mean()
    off = (mean.sum() - diagonal.sum()) / max(mean.numel() - len(mean), 1)
    return {"critic/accuracy": accuracy.item(), "critic/logits_positive": diagonal.mean().item(),
            "critic/logits_negative": off.item(), "critic/logits_scale": mean.abs().mean().item()}


class CRLAgent(OwnsActor, LatentGoals, Agent):
    """Contrastive RL, composed of the shared parts (agents/actor.py): the actor's trainer and
    averaged copy, TD3's exploration noise and its actor; RIG's latent goals and fine-tuning."""

    name = "crl"
    view = "latent"  # the default; `crl.representation` chooses (view_kind)
    batch_keys = ("obs", "goal", "action")  # no reward; td_infonce adds the next state

    def __init__(self, obs_dim: int, goal_dim: int, action_dim: int, action_low, action_high, cfg: TD3Config,
                 crl: CRLConfig, rng: np.random.Generator, image_size: int = 0, device: str = "cpu"):
        """Latents: obs_dim and goal_dim are the view's. Pixels: images of `image_size`, and phi, psi
        and the actor read the encoder's features. Every network on `device`, each moved there as it is
        made (in the CPU's order of random initial weights)."""
        if crl.representation not in REPRESENTATIONS:
            raise ValueError(f"crl.representation: unknown '{crl.representation}' (choose latent, pixels or state)")
        if crl.policy not in POLICIES:
            raise ValueError(f"crl.policy: unknown '{crl.policy}' (choose deterministic or gaussian)")
        if crl.loss not in LOSSES:
            raise ValueError(f"crl.loss: unknown '{crl.loss}' (choose {', '.join(LOSSES)})")
        self.cfg, self.crl = cfg, crl
        self.exploration_goals, self.finetune_every = crl.exploration_goals, 0  # build sets the VAE's schedule
        self.td = crl.loss == "td_infonce"
        if self.td:  # the next step, its achieved goal (pixels: the next image itself), and whether it ended
            next_goal = ("next_obs",) if crl.representation == "pixels" else ("next_obs", "next_achieved")
            self.batch_keys = (*self.batch_keys, *next_goal, "terminated")
        self.encoder = None
        if crl.representation == "pixels":
            self.encoder = ConvEncoder(image_size, crl.pixels["feature_dim"],
                                       crl.pixels["precision"] == "bf16-mixed").to(device)
            obs_dim = goal_dim = crl.pixels["feature_dim"]
        self.obs_dim, self.goal_dim = obs_dim, goal_dim
        # Latents get TD3's running normalizer; the encoder's features are bounded already.
        self.gaussian = crl.policy == "gaussian"
        actor = GaussianActor if self.gaussian else Actor
        self.actor = actor(obs_dim + goal_dim, action_dim, cfg.hidden, action_low, action_high,
                           cfg.normalize_inputs and self.encoder is None).to(device)
        self.critic = ContrastiveCritic(obs_dim, action_dim, goal_dim, list(crl.hidden), crl.repr_dim,
                                        command_dim=goal_dim if self.td else 0).to(device)
        if self.td:
            self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        # td_infonce on pixels: a Monte Carlo head that trains the encoder beside the TD critic
        self.representation_critic = (ContrastiveCritic(obs_dim, action_dim, goal_dim, list(crl.hidden), crl.repr_dim
                                                        ).to(device) if self.td and self.encoder is not None else None)
        learned = [*self.critic.parameters(), *(self.encoder.parameters() if self.encoder is not None else []),
                   *(self.representation_critic.parameters() if self.representation_critic is not None else [])]
        self.trainer = ActorTrainer(self.actor, cfg.actor_lr, cfg.max_grad_norm, crl.actor_average)
        self.critic_opt = torch.optim.Adam(learned, lr=cfg.critic_lr, fused=True)
        self.noise = ExplorationNoise.from_config(cfg, action_dim, rng)
        if self.gaussian:  # rollouts sample with their own generator, checkpointed; updates with torch's
            self.temperature = Temperature().to(device)
            self.temperature_opt = torch.optim.Adam(self.temperature.parameters(), lr=cfg.actor_lr)
            self.generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
        self.num_updates = 0

    @classmethod
    def view_kind(cls, params) -> str:
        return params["crl"]["representation"]

    @classmethod
    def pursues_goal(cls, params, env: str) -> bool:
        return True  # its state diagnostic too, on every env

    @classmethod
    def build(cls, params, view, action_low, action_high, rng: np.random.Generator) -> "CRLAgent":
        crl = CRLConfig.from_params(params["crl"])
        if crl.exploration_goals == "prior" and crl.representation != "latent":
            raise ValueError(f"crl.exploration_goals=prior needs crl.representation=latent (imagined goals come "
                             f"from the VAE's prior); use crl.exploration_goals=env with {crl.representation}")
        agent = cls(view.obs_dim, view.goal_dim, len(action_low), action_low, action_high, image_td3_config(params),
                    crl, rng, image_size=params["render"]["image_size"], device=resolve(params["device"]))
        agent.finetune_every = params["image_agents"]["finetune"]["every"]
        return agent

    @property
    def batch_size(self) -> int:
        return self.cfg.batch_size

    def replay_options(self, params, view) -> dict:
        """Every goal is a geometric future observation; no reward."""
        return {"relabel": {"geometric": 1.0}, "reward_fn": no_reward, "geometric_discount": self.crl.discount,
                "goal_sampler": getattr(view, "sample_prior", None)}  # a VAE's prior, latents only

    def start_episode(self) -> None:
        self.noise.reset()

    def policy(self, training: bool) -> Policy:
        """The actor; a Gaussian's rollouts sample from it, and its evaluation takes the mode. With
        `crl.actor_average`, evaluations take the averaged actor's action, and rollouts the actor's."""
        acting = self.acting(training)
        actor = acting if self.encoder is None else PixelActor(self.encoder, acting)
        if training and self.gaussian:
            return Policy(actor, select=lambda x, goal, generator: actor.sample(x, generator)[0], generator=self.generator)
        return Policy(actor)

    def explore(self, action: np.ndarray, step: int) -> np.ndarray:
        """A Gaussian's action is a sample already: no noise on top."""
        return action if self.gaussian else self.noise.explore(action, step)

    # --- learning -----------------------------------------------------------------------
    def update(self, batch: dict[str, torch.Tensor]) -> dict:
        if self.encoder is None:
            x = torch.cat([batch["obs"], batch["goal"]], dim=-1)
            self.actor.normalizer.update(x)
            x = self.actor.normalizer(x)  # one normalizer for the actor's input; the critic reads its two halves
            obs, goal = x[:, : self.obs_dim], x[:, self.obs_dim :]
            if self.td:  # the next state and its achieved goal, through the same two halves
                x = self.actor.normalizer(torch.cat([batch["next_obs"], batch["next_achieved"]], dim=-1))
                next_obs, next_goal = x[:, : self.obs_dim], x[:, self.obs_dim :]
        else:
            images = torch.cat([batch["obs"], batch["goal"], *([batch["next_obs"]] if self.td else [])])
            if self.crl.pixels["shift"] > 0:
                images = random_shift(images, self.crl.pixels["shift"])
            obs, goal, *rest = self.encoder(images).chunk(3 if self.td else 2)
            next_obs = next_goal = rest[0] if self.td else None  # an image is its own achieved goal
        if self.td:
            metrics = self.update_td_infonce(obs, batch["action"], goal, next_obs, next_goal, batch["terminated"])
        else:
            metrics = self.update_contrastive(obs, batch["action"], goal)
        metrics.update(self.update_crl_actor(obs.detach(), goal.detach(), batch["action"], batch.get("demo")))
        self.num_updates += 1
        return metrics

    @staticmethod
    def monte_carlo_loss(critic: ContrastiveCritic, obs, action, goal) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, logits (2, n, n)): InfoNCE, each row's softmax over the batch's goals, its own
        geometric future goal the label."""
        logits = critic.pairs(critic.state_action(obs, action), critic.goal(goal))
        rows = logits.flatten(0, 1)
        # the reference's logsumexp penalty: softmax ignores a row's offset, which could drift unbounded
        return (F.cross_entropy(rows, torch.arange(len(obs), device=obs.device).repeat(len(logits)))
                + 0.01 * (torch.logsumexp(rows, dim=1) ** 2).mean()), logits

    def update_contrastive(self, obs, action, goal) -> dict:
        loss, logits = self.monte_carlo_loss(self.critic, obs, action, goal)
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_gradients(self.critic, self.cfg.max_grad_norm, "critic")
        self.critic_opt.step()
        return {"losses/contrastive": loss.item(), **logit_metrics(logits), **grad_norm}

    def update_td_infonce(self, obs, action, goal, next_obs, next_goal, terminated) -> dict:
        """TD InfoNCE (Zheng, Salakhutdinov & Eysenbach 2023, section 4): the critic learns the
        discounted occupancy of the current goal-conditioned policy, not of the data's own futures.
        Row i is commanded c_i, another row's goal (a goal its own state need not lead to); the
        candidate futures are the batch's commands. The next state s'_i is row i's future with weight
        1 - gamma (a cross-entropy with the identity over the batch's next states); with weight gamma
        its future is wherever the policy goes from s'_i, which the target critic tells as soft
        labels w_i = softmax_j f_target(s'_i, pi(s'_i, c_i), c_i, c_j), min over the twins. A
        terminated s'_i is absorbing: it is its own future with weight 1, its final frame forever.
        Both terms get the 0.01 logsumexp^2 penalty, as InfoNCE does: a row's
        offset is what the actor's objective reads.

        On pixels the encoder also learns from the Monte Carlo InfoNCE of a second head
        (`representation_critic`), which only it reads. The TD loss alone barely moves a fresh
        encoder: on point_maze's pixels its critic still picked the next state at chance (0.004 of
        256) after 3,500 updates, where the Monte Carlo loss's had 0.13 after 1,500. Its targets
        come from the target critic, nearly uniform at first, and they outweigh the next state's
        (1 - gamma) = 0.01."""
        gamma, n = self.crl.discount, len(obs)
        command = goal.roll(1, 0)
        phi = self.critic.state_action(obs, action, command)
        now = self.critic.pairs(phi, self.critic.goal(next_goal)).flatten(0, 1)  # (2n, n) against s'_j
        later = self.critic.pairs(phi, self.critic.goal(command)).flatten(0, 1)  # (2n, n) against c_j
        with torch.no_grad():
            next_command = torch.cat([next_obs, command], dim=-1).detach()
            next_action = (self.actor.sample_normalized(next_command)[0] if self.gaussian
                           else self.actor.from_normalized(next_command))
            target = self.critic_target
            w = target.pairs(target.state_action(next_obs.detach(), next_action, command.detach()),
                             target.goal(command.detach())).min(0).values.softmax(1)
            ended = terminated.repeat(2)  # the final frame forever
            now_weight, later_weight = (1 - gamma) + gamma * ended, gamma * (1 - ended)
            w = w.repeat(2, 1)
        rows = torch.arange(n, device=obs.device).repeat(2)
        loss = (now_weight * F.cross_entropy(now, rows, reduction="none")
                + later_weight * F.cross_entropy(later, w, reduction="none")).mean()
        loss = loss + 0.01 * ((torch.logsumexp(now, 1) ** 2).mean() + (torch.logsumexp(later, 1) ** 2).mean())
        metrics = {"losses/contrastive": loss.item(), **logit_metrics(now.view(2, n, -1)),
                   "critic/target_weight_on_command": torch.diagonal(w[:n]).mean().item()}
        if self.representation_critic is not None:
            shaping, logits = self.monte_carlo_loss(self.representation_critic, obs, action, goal)
            loss = loss + shaping
            metrics.update({"losses/representation": shaping.item(),
                            "representation/accuracy": logit_metrics(logits)["critic/accuracy"]})
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        metrics.update(clip_gradients(self.critic, self.cfg.max_grad_norm, "critic"))
        self.critic_opt.step()
        soft_update_params(self.critic, self.critic_target, self.crl.target_polyak)
        return metrics

    def update_crl_actor(self, obs, goal, demo_action=None, demo=None) -> dict:
        """obs, goal: what the critic read (normalized latents, or encoder features), detached.
        Maximizes min_e f_e(s, pi(s, g), g) over its mean |f| (OGBench's objective); with
        demonstration rows (`demo` 1), the Q-filtered behaviour cloning of agents/demonstrations.py
        on them, with their own goals."""
        with torch.no_grad():  # psi(g) does not depend on the actor: no gradient, once per goal
            psi = self.critic.goal(goal)
        n = len(obs)
        own = torch.arange(n, device=obs.device)  # row i's goal among the batch's goals (candidates)
        if demo is not None:
            with torch.no_grad():  # the demonstrated action's value, for the Q-filter
                phi = self.critic.state_action(obs, demo_action, goal if self.td else None)
                q_demo = ((phi * psi).sum(-1) * self.critic.scale).min(0).values
        if self.crl.actor_random_goals:
            obs, goal, own = torch.cat([obs, obs]), torch.cat([goal, goal.roll(1, 0)]), torch.cat([own, own.roll(1)])
        x = torch.cat([obs, goal], dim=-1)
        action, log_prob = self.actor.sample_normalized(x) if self.gaussian else (self.actor.from_normalized(x), None)
        with frozen(self.critic):
            phi = self.critic.state_action(obs, action, goal if self.td else None)
            q = ((phi * psi[:, own]).sum(-1) * self.critic.scale).min(0).values
            loss = -q.mean() / (q.abs().mean().detach() + 1e-6)
        metrics = {}
        if demo is not None:  # the rows with their own goals come first
            q_own = q[:n].detach()
            if not self.q_filter:  # every demonstration row cloned
                q_demo, q_own = torch.ones_like(q_demo), torch.zeros_like(q_own)
            bc, kept = q_filtered_bc(action[:n], demo_action, q_demo, q_own, demo)
            loss = loss + self.bc_weight * bc
            metrics = {"losses/bc": bc.item(), "demos/q_filter_kept": kept.item()}
        if self.gaussian:
            loss = loss + self.temperature().detach() * log_prob.mean()
        metrics.update({"losses/actor": loss.item(), "values/q": q.mean().item(), **self.actor_step(loss)})
        if self.gaussian:
            metrics.update(self.update_temperature(log_prob.detach()))
        return metrics

    def update_temperature(self, log_prob: torch.Tensor) -> dict:
        """alpha rises while the policy's entropy -E[log pi] is below the target, and falls above it."""
        loss = -(self.temperature.log_alpha * (log_prob + self.crl.target_entropy)).mean()
        self.temperature_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.temperature_opt.step()
        return {"values/alpha": self.temperature().item(), "values/entropy": -log_prob.mean().item()}

    # --- snapshots and policy.pt ---------------------------------------------------------------
    def nets(self) -> tuple[str, ...]:
        """A target critic for td_infonce only; the pixels encoder where there is one."""
        return (("actor", "critic", "actor_opt", "critic_opt") + (("critic_target",) if self.td else ())
                + (("averaged_actor",) if self.averaged_actor is not None else ())
                + (("encoder",) if self.encoder is not None else ())
                + (("representation_critic",) if self.representation_critic is not None else ())
                + (("temperature", "temperature_opt") if self.gaussian else ()))

    def state_dict(self) -> dict:
        state = {**super().state_dict(), "noise_state": self.noise.state.copy(), "num_updates": self.num_updates}
        return {**state, "generator": self.generator.get_state()} if self.gaussian else state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.noise.state[:] = state["noise_state"]
        self.num_updates = state["num_updates"]
        if self.gaussian:
            self.generator.set_state(state["generator"])

    def policy_file(self) -> dict:
        saved = actor_file(self.actor, self.acting(training=False), self.cfg.hidden, self.actor.normalizer.enabled)
        saved["meta"]["gaussian"] = self.gaussian
        return with_encoder(saved, self.encoder)

    @classmethod
    def load_policy(cls, saved: dict, device: str = "cpu") -> Policy:
        return Policy(encoded_actor(saved, load_actor(saved, device), device))
