"""TD3 (Fujimoto, van Hoof & Meger 2018): twin critics, target policy smoothing, delayed updates.

The state-based oracle: the simulator's state and the true goal vector (StateView), the
dense reward -||achieved' - g|| with HER relabelling (Andrychowicz et al. 2017, section 3.4),
or the env's own reward where the goal is not the task (`td3.env_reward_envs`). The
image-based TDM report's section 6.2 uses it as its baseline.

The agent is one small class. It sees a batch of tensors
(`obs`, `goal`, `action`, `reward`, `next_obs`, `terminated`) and knows nothing about
environments, replay or files. Goal-conditioned agents concatenate `goal` to `obs`;
a task without goals passes an empty goal. Actions live in [-1, 1] (see `Actor`).

It is also the base of every method (agents/__init__.py's protocol): the Workspace builds
it with `build`, asks it for its replay's relabelling (`replay_options`), each episode's
goal (`exploration_goal`), its `policy` and exploration noise (`explore`), and calls
`update` and `after_episode`; `policy_file` and `load_policy` save and rebuild what acts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from visgoal.agents.networks import Actor, Critic, GaussianActor, frozen
from visgoal.agents.policy import Policy
from visgoal.agents.replay import env_reward, negative_distance


@dataclass
class TD3Config:
    """The `td3` section of params.yaml (each key is described in params.schema.json)."""

    hidden: list[int] = field(default_factory=lambda: [64, 64])
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    gamma: float = 0.95
    polyak: float = 0.05
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
    actor_average: float = 0.0

    @classmethod
    def from_params(cls, section: dict) -> "TD3Config":
        return cls(**{f.name: section[f.name] for f in fields(cls)})


def soft_update_params(net: nn.Module, target: nn.Module, polyak: float) -> None:
    """Polyak averaging: target <- polyak * net + (1 - polyak) * target. Buffers (normalizer
    statistics) are copied, not averaged."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(net.parameters()), polyak)
        for b, tb in zip(net.buffers(), target.buffers()):
            tb.copy_(b)


def averaged_copy(actor: nn.Module, rate: float) -> nn.Module | None:
    """A Polyak average of `actor` that moves `rate` toward it after each actor step (None for rate 0).
    Evaluations and policy.pt act with it, rollouts with the actor: the actor's success can swing
    between neighbouring checkpoints, and its average over the last ~1/rate steps swings less."""
    return copy.deepcopy(actor).requires_grad_(False) if rate > 0 else None


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
        # fused: one kernel per step instead of a loop over tensors (small nets are overhead-bound)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, fused=True)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr, fused=True)
        self.noise = ExplorationNoise(cfg.exploration, action_dim, cfg.exploration_noise, cfg.exploration_noise_final,
                                      cfg.exploration_anneal_steps, cfg.ou_theta, rng)
        self.actor_average, self.averaged_actor = cfg.actor_average, averaged_copy(self.actor, cfg.actor_average)
        self.num_updates = 0

    @classmethod
    def view_kind(cls, params) -> str:
        """What the agent sees with these parameters (a method may offer more than one `view`)."""
        return cls.view

    @classmethod
    def pursues_goal(cls, params, env: str) -> bool:
        """Whether it learns to reach the goal: TD3 learns the env's own reward instead where the goal
        is not the task (`td3.env_reward_envs`: inverted_pendulum)."""
        return env not in params["td3"]["env_reward_envs"]

    @classmethod
    def build(cls, params, view, action_low, action_high, rng: np.random.Generator) -> "TD3Agent":
        """The agent for a view, from params.yaml's sections."""
        return cls(view.obs_dim + view.goal_dim, len(action_low), action_low, action_high,
                   TD3Config.from_params(params["td3"]), rng, terminal_keeps_reward=view.goal_conditioned)

    def make_critic(self, input_dim: int, action_dim: int) -> nn.Module:
        return Critic(input_dim, action_dim, self.cfg.hidden)

    # --- what the Workspace asks of a method ---------------------------------------------
    def replay_options(self, params, view) -> dict:
        """The replay's relabelling mixture and reward: HER's future goals and -distance, or no
        goal and the env's own reward."""
        if not view.goal_conditioned:
            return {"relabel": {}, "reward_fn": env_reward}
        return {"relabel": params["replay"]["relabel"], "reward_fn": negative_distance}

    def exploration_goal(self, view, step, rng: np.random.Generator) -> np.ndarray:
        """The goal pursued in a training episode: the env's own."""
        return view.goal(step)

    def after_episode(self, view, replay, episodes: int, learning: bool, rng: np.random.Generator) -> dict:
        """Called after each stored episode; returns metrics to log (nothing for TD3)."""
        return {}

    def policy(self, training: bool) -> Policy:
        """What acts: the actor (training adds `explore`'s noise to it)."""
        return Policy(self.acting(training))

    def acting(self, training: bool) -> nn.Module:
        """The actor for rollouts; the averaged actor (`actor_average`), where there is one, for evaluations."""
        return self.averaged_actor if self.averaged_actor is not None and not training else self.actor

    def explore(self, action: np.ndarray, step: int) -> np.ndarray:
        """The policy's action plus exploration noise, kept in [-1, 1]."""
        return np.clip(action + self.noise.sample(step), -1.0, 1.0)

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
        q1, q2 = self.critic(x, action)
        loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = self._clip(self.critic, "critic")
        self.critic_opt.step()
        return {"losses/critic": loss.item(), "values/q1": q1.mean().item(), "values/q2": q2.mean().item(),
                "values/target_q": target_q.mean().item(), **grad_norm}

    def update_actor(self, x) -> dict:
        with frozen(self.critic):
            loss = -self.critic.first(x, self.actor.from_normalized(x)).mean()
        return {"losses/actor": loss.item(), **self.actor_step(loss)}

    def actor_step(self, loss: torch.Tensor) -> dict:
        """One step of the actor on `loss` (every method's), then the averaged actor moves
        `actor_average` toward it; returns the gradient norm if clipped."""
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = self._clip(self.actor, "actor")
        self.actor_opt.step()
        if self.averaged_actor is not None:
            soft_update_params(self.actor, self.averaged_actor, self.actor_average)
        return grad_norm

    def update(self, batch: dict[str, torch.Tensor]) -> dict:
        x, next_x = self.inputs(batch["obs"], batch["goal"]), self.inputs(batch["next_obs"], batch["goal"])
        self.update_normalizer(x)
        x, next_x = self.normalize(x), self.normalize(next_x)
        metrics = self.update_critic(x, batch["action"], batch["reward"], next_x, batch["terminated"])
        self.num_updates += 1
        if self.num_updates % self.cfg.policy_delay == 0:  # delayed policy updates (section 5.2)
            metrics.update(self.update_actor(x))
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
        """Optional gradient-norm clipping; reports the norm before clipping."""
        if self.cfg.max_grad_norm > 0:
            return {f"grads/{name}": float(nn.utils.clip_grad_norm_(net.parameters(), self.cfg.max_grad_norm))}
        return {}

    # --- snapshots ----------------------------------------------------------------------
    def nets(self) -> tuple[str, ...]:
        """The attributes a checkpoint carries, each with its own state_dict."""
        return (("actor", "critic", "actor_target", "critic_target", "actor_opt", "critic_opt")
                + (("averaged_actor",) if self.averaged_actor is not None else ()))

    def state_dict(self) -> dict:
        return {**{name: getattr(self, name).state_dict() for name in self.nets()},
                "noise_state": self.noise.state.copy(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict) -> None:
        for name in self.nets():
            getattr(self, name).load_state_dict(state[name])
        self.noise.state[:] = state["noise_state"]
        self.num_updates = state["num_updates"]

    # --- policy.pt ------------------------------------------------------------------------
    def policy_file(self) -> dict:
        """The weights of what evaluations act with (`acting`) and what it takes to rebuild it (the
        Workspace adds the run's meta)."""
        return {"weights": self.acting(training=False).state_dict(),
                "meta": {"input_dim": self.actor.net[0].in_features, "action_dim": len(self.actor.action_scale),
                         "hidden": list(self.cfg.hidden), "normalize_inputs": self.cfg.normalize_inputs}}

    @staticmethod
    def load_actor(saved: dict) -> Actor:
        meta = saved["meta"]
        zeros = np.zeros(meta["action_dim"])
        kind = GaussianActor if meta.get("gaussian") else Actor  # crl's `policy: gaussian`
        actor = kind(meta["input_dim"], meta["action_dim"], meta["hidden"], zeros, zeros, meta["normalize_inputs"])
        actor.load_state_dict(saved["weights"])
        return actor.eval()

    @classmethod
    def load_policy(cls, saved: dict) -> Policy:
        """The deterministic policy of a `policy_file`, for evaluation."""
        return Policy(cls.load_actor(saved))
