"""What every method does with its actor, written once: the optimizer step (with optional gradient
clipping), the averaged copy that evaluations act with, and the exploration noise of rollouts.
TD3 (and RIG and TDM, which are TD3) and crl each compose these."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from visgoal.agents.networks import Actor, GaussianActor


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


def clip_gradients(net: nn.Module, max_norm: float, name: str) -> dict:
    """Optional gradient-norm clipping (`max_norm` 0: none); reports the norm before clipping."""
    if max_norm > 0:
        return {f"grads/{name}": float(nn.utils.clip_grad_norm_(net.parameters(), max_norm))}
    return {}


class ActorTrainer:
    """An actor's optimizer (Adam), its clipping and its averaged copy (`actor_average`): one
    `step` per actor loss, for every method."""

    def __init__(self, actor: nn.Module, lr: float, max_grad_norm: float = 0.0, average: float = 0.0):
        self.actor, self.max_grad_norm, self.average = actor, max_grad_norm, average
        self.opt = torch.optim.Adam(actor.parameters(), lr=lr, fused=True)  # fused: one kernel per step
        self.averaged = averaged_copy(actor, average)

    def step(self, loss: torch.Tensor) -> dict:
        """Zero the gradients, backpropagate `loss`, clip, step; then the averaged actor moves
        `average` toward the actor. Returns the gradient norm if clipped."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_gradients(self.actor, self.max_grad_norm, "actor")
        self.opt.step()
        if self.averaged is not None:
            soft_update_params(self.actor, self.averaged, self.average)
        return grad_norm

    def acting(self, training: bool) -> nn.Module:
        """The actor for rollouts; the averaged actor, where there is one, for evaluations."""
        return self.averaged if self.averaged is not None and not training else self.actor


class ExplorationNoise:
    """Gaussian or Ornstein-Uhlenbeck action noise whose scale anneals linearly with env steps."""

    def __init__(self, kind: str, action_dim: int, start: float, final: float, anneal_steps: int, theta: float,
                 rng: np.random.Generator):
        if kind not in ("gaussian", "ou"):
            raise ValueError(f"td3.exploration: unknown noise '{kind}' (choose gaussian or ou)")
        self.kind, self.start, self.final, self.anneal_steps, self.theta = kind, start, final, anneal_steps, theta
        self.rng = rng
        self.state = np.zeros(action_dim)

    @classmethod
    def from_config(cls, cfg, action_dim: int, rng: np.random.Generator) -> "ExplorationNoise":
        """From the td3 section's exploration keys."""
        return cls(cfg.exploration, action_dim, cfg.exploration_noise, cfg.exploration_noise_final,
                   cfg.exploration_anneal_steps, cfg.ou_theta, rng)

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

    def explore(self, action: np.ndarray, step: int) -> np.ndarray:
        """The action plus noise, kept in [-1, 1]."""
        return np.clip(action + self.sample(step), -1.0, 1.0)


def actor_file(actor: nn.Module, acting: nn.Module, hidden, normalize_inputs: bool) -> dict:
    """policy.pt's part for an actor: the weights of what acts (`acting`: the actor or its average)
    and what it takes to rebuild it (the Workspace adds the run's meta)."""
    return {"weights": acting.state_dict(),
            "meta": {"input_dim": actor.net[0].in_features, "action_dim": len(actor.action_scale),
                     "hidden": list(hidden), "normalize_inputs": normalize_inputs}}


def load_actor(saved: dict, device: str = "cpu") -> nn.Module:
    """The actor of an `actor_file`, in evaluation mode on `device`: TD3's, or crl's `policy: gaussian`."""
    meta = saved["meta"]
    zeros = np.zeros(meta["action_dim"])
    kind = GaussianActor if meta.get("gaussian") else Actor
    actor = kind(meta["input_dim"], meta["action_dim"], meta["hidden"], zeros, zeros, meta["normalize_inputs"])
    actor.load_state_dict(saved["weights"])
    return actor.to(device).eval()


class OwnsActor:
    """What an agent that trains an actor through `self.trainer` (an ActorTrainer) answers: its
    step, what acts, and the optimizer and average under the names its checkpoints use."""

    trainer: ActorTrainer

    @property
    def actor_opt(self) -> torch.optim.Optimizer:
        return self.trainer.opt

    @property
    def averaged_actor(self) -> nn.Module | None:
        return self.trainer.averaged

    def acting(self, training: bool) -> nn.Module:
        """The actor for rollouts; the averaged actor (`actor_average`), where there is one, for evaluations."""
        return self.trainer.acting(training)

    def actor_step(self, loss: torch.Tensor) -> dict:
        """One step of the actor on `loss`, then its average's; the gradient norm if clipped."""
        return self.trainer.step(loss)
