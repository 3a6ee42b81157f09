"""Small MLPs for the actor and the twin critics, and a running input normalizer."""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


def mlp(in_dim: int, hidden: list[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


def standard_normal(like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """N(0, 1) draws in the shape, dtype and device of `like`: from `generator` on that generator's
    device (a policy's CPU generator: drawn there and moved, the same numbers on any device), else
    from torch's generator of `like`'s device."""
    where = generator.device if generator is not None else like.device
    return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=where).to(like.device)


@contextmanager
def frozen(net: nn.Module):
    """No weight gradients for `net` inside the block: an actor's loss backpropagates through the
    critic to the action only (the critic's own gradients would be discarded: a third less work)."""
    net.requires_grad_(False)
    try:
        yield net
    finally:
        net.requires_grad_(True)


class Normalizer(nn.Module):
    """Running mean/std of the network input, clipped; its statistics are buffers, so they
    travel with the weights in policy.pt and checkpoints. Disabled: the identity."""

    def __init__(self, dim: int, enabled: bool = True, clip: float = 5.0, eps: float = 1e-2):
        super().__init__()
        self.enabled, self.clip, self.eps = enabled, clip, eps
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("shift", torch.zeros(dim))  # float32 mean and std, recomputed by update()
        self.register_buffer("scale", torch.ones(dim))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Chan et al.'s parallel update of mean and sum of squared deviations with a batch."""
        if not self.enabled or len(x) == 0:
            return
        var, mean = torch.var_mean(x, dim=0, correction=0)
        n, mean = float(len(x)), mean.to(torch.float64)
        delta = mean - self.mean
        total = self.count + n
        self.m2 += var.to(torch.float64) * n + delta**2 * self.count * n / total
        self.mean += delta * n / total
        self.count.copy_(total)
        if total >= 2:
            self.shift.copy_(self.mean)
            self.scale.copy_((self.m2 / total).sqrt().clamp_min(self.eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        return ((x - self.shift) / self.scale).clamp(-self.clip, self.clip)


class Actor(nn.Module):
    """Deterministic policy pi(s, g) -> action in [-1, 1]; `to_env` scales it into the env's box.

    The agent, the replay buffer and all noise work in [-1, 1], so TD3's noise scales
    mean the same on every environment. The input normalizer lives here so that
    policy.pt is self-contained; during updates the agent normalizes a batch once and
    calls `from_normalized`."""

    def __init__(self, input_dim: int, action_dim: int, hidden: list[int], action_low, action_high,
                 normalize: bool = True):
        super().__init__()
        self.normalizer = Normalizer(input_dim, enabled=normalize)
        self.net = mlp(input_dim, hidden, action_dim)
        # built on the CPU, like every module here; `.to(device)` moves these buffers with the weights
        low = torch.as_tensor(action_low, dtype=torch.float32, device="cpu")
        high = torch.as_tensor(action_high, dtype=torch.float32, device="cpu")
        self.register_buffer("action_scale", (high - low) / 2)
        self.register_buffer("action_bias", (high + low) / 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_normalized(self.normalizer(x))

    def from_normalized(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(x))

    def to_env(self, action: torch.Tensor) -> torch.Tensor:
        return action * self.action_scale + self.action_bias


class GaussianActor(Actor):
    """A tanh-squashed Gaussian policy (SAC's; the contrastive RL reference's on images): its net
    gives a mean and a scale per action dimension. What it returns as a module is its mode,
    tanh(mean), so that evaluation, `Policy` and policy.pt treat it as the deterministic actor;
    `sample` draws from it, with the log-probability an entropy bonus needs."""

    def __init__(self, input_dim: int, action_dim: int, hidden: list[int], action_low, action_high,
                 normalize: bool = True):
        super().__init__(input_dim, action_dim, hidden, action_low, action_high, normalize)
        self.net = mlp(input_dim, hidden, 2 * action_dim)

    def from_normalized(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(x).chunk(2, dim=-1)[0])

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sample_normalized(self.normalizer(x), generator)

    def sample_normalized(self, x: torch.Tensor, generator: torch.Generator | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """(action in (-1, 1), its log-probability (n,)), reparameterized: gradients reach the net.
        The scale is softplus + 1e-3, as Acme's NormalTanhDistribution that the reference uses."""
        mean, raw = self.net(x).chunk(2, dim=-1)
        scale = F.softplus(raw) + 1e-3
        eps = standard_normal(mean, generator)
        u = mean + scale * eps
        # log N(u; mean, scale) - log |d tanh(u) / du|, the latter as 2 (log 2 - u - softplus(-2u))
        gaussian = -0.5 * eps**2 - scale.log() - 0.5 * math.log(2 * math.pi)
        squash = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
        return torch.tanh(u), (gaussian - squash).sum(-1)


class Critic(nn.Module):
    """Twin Q-functions Q1, Q2(s, g, a) (TD3, Fujimoto et al. 2018, section 4.2: clipped double Q).
    Takes normalized inputs. (One ensemble with batched matmuls measured no faster on CPU.)"""

    def __init__(self, input_dim: int, action_dim: int, hidden: list[int], out_dim: int = 1):
        super().__init__()
        self.q1 = mlp(input_dim + action_dim, hidden, out_dim)
        self.q2 = mlp(input_dim + action_dim, hidden, out_dim)

    def forward(self, x: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Q1, Q2), each (n,); with out_dim > 1 (the TDM critic), each (n, out_dim)."""
        xa = torch.cat([x, action], dim=-1)
        return self._shape(self.q1(xa)), self._shape(self.q2(xa))

    def first(self, x: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q1 alone, what the actor maximizes (TD3 section 4.2)."""
        return self._shape(self.q1(torch.cat([x, action], dim=-1)))

    @staticmethod
    def _shape(q: torch.Tensor) -> torch.Tensor:
        return q.squeeze(-1) if q.shape[-1] == 1 else q
