"""Episode replay: whole episodes, so every transition knows its future (for goal relabelling).

Episodes live in preallocated ring arrays `[n_episodes, T(+1), ...]` (numpy's zeros are
lazily backed, so a large capacity costs memory only as it fills). Sampling is
vectorized: one numpy call per field, no per-sample Python loop.

Relabelling (HER, Andrychowicz et al. 2017, section 3.4; RIG, Nair et al. 2018, section 4.3)
replaces a sampled transition's goal, with mixture weights from `replay.relabel`:
  future  - an achieved goal later in the same episode ("future" strategy, k=4 <=> 0.8)
  episode - an achieved goal anywhere in the same episode
  buffer  - an achieved goal from any stored episode
  prior   - a goal drawn by `goal_sampler(n, rng)` (RIG: a latent from the VAE prior)
  geometric - the achieved goal k steps later, k ~ Geometric(1 - `geometric_discount`) truncated
            to the steps left in the episode (contrastive RL's positive: the discounted state
            occupancy, renormalized within the episode as the reference implementation does; capping
            k at the last step instead would put 0.99^49 = 61% of a 50-step episode's first
            positives on its last frame). Past an absorbing end, k lands on the final state
The rest keep the episode's own goal. Rewards are recomputed on the final goal by
`reward_fn(next_achieved, goal, env_reward)`. `batch_hook(batch, rng)` may add to a
batch afterwards (TDM: the horizon tau).

Image agents store latents as `obs` and `achieved`; with `image_shape` the buffer also
keeps each frame (uint8), so that `reencode(encoder)` can rewrite every stored latent
after the VAE is fine-tuned (RIG section 4.1). An agent that learns from pixels stores
the frames themselves as `obs` (uint8), and its achieved goal is its observation
(`achieved_is_obs`: one array, not two); its goals are then images too.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

STRATEGIES = ("original", "future", "episode", "buffer", "prior", "geometric")

RewardFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def negative_distance(next_achieved: np.ndarray, goal: np.ndarray, env_reward: np.ndarray) -> np.ndarray:
    """Dense goal reward: -||achieved' - g||."""
    return -np.linalg.norm(next_achieved - goal, axis=-1).astype(np.float32)


def no_reward(next_achieved: np.ndarray, goal: np.ndarray, env_reward: np.ndarray) -> np.ndarray:
    """For a method that learns without rewards (contrastive RL): zeros, never read."""
    return np.zeros(len(goal), np.float32)


def env_reward(next_achieved: np.ndarray, goal: np.ndarray, env_reward: np.ndarray) -> np.ndarray:
    """The environment's own reward (a task without goals)."""
    return env_reward


ABSORBED_HORIZON = 10**6  # steps: "forever" for a geometric law with gamma < 0.99999


def truncated_geometric(gamma: float, most: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """k in {1, ..., most} with P(k) proportional to gamma^(k-1), by inverting its CDF
    1 - gamma^k over 1 - gamma^most; one uniform draw per sample."""
    u = rng.random(len(most))
    k = np.ceil(np.log1p(-u * (1.0 - gamma ** most)) / np.log(gamma))
    return np.clip(k, 1, most).astype(np.int64)


def mixture(relabel: dict[str, float]) -> np.ndarray:
    """Probabilities over STRATEGIES; what the relabel weights leave over keeps the original goal."""
    unknown = set(relabel) - set(STRATEGIES[1:])
    if unknown:
        raise ValueError(f"relabel: unknown strategy {sorted(unknown)} (known: {', '.join(STRATEGIES[1:])})")
    weights = np.array([float(relabel.get(name, 0.0)) for name in STRATEGIES[1:]])
    if (weights < 0).any() or weights.sum() > 1 + 1e-9:
        raise ValueError(f"relabel: weights must be >= 0 and sum to at most 1, got {relabel}")
    return np.concatenate([[max(0.0, 1.0 - weights.sum())], weights])


class EpisodeReplay:
    def __init__(self, capacity: int, max_length: int, obs_shape: tuple[int, ...], goal_dim: int, action_dim: int,
                 relabel: dict[str, float], reward_fn: RewardFn, obs_dtype=np.float32,
                 goal_sampler: Callable | None = None, batch_hook: Callable | None = None,
                 image_shape: tuple[int, ...] | None = None, geometric_discount: float = 0.99,
                 achieved_is_obs: bool = False, reads: tuple[str, ...] | None = None):
        """`goal_dim` is the goals' size, or with `achieved_is_obs` ignored: goals have the observations'
        shape and dtype, and the achieved goal of a step is its observation. `reads` names the batch
        fields the agent uses (None: all): `sample` gathers no other stored step, nor a reward unless
        it is read (crl on pixels would copy three batches of images for nothing)."""
        self.max_length, self.geometric_discount = max_length, geometric_discount
        wanted = set(reads) if reads is not None else {"obs", "next_obs", "achieved", "next_achieved", "reward"}
        self.rewarded = "reward" in wanted
        # the stored steps a batch gathers, decided once: the reward is computed on next_achieved
        self.gathered = [key for key in ("obs", "next_obs", "achieved", "next_achieved")
                         if key in wanted or (key == "next_achieved" and self.rewarded)]
        self.n_episodes = max(1, capacity // max_length)
        self.probs = mixture(relabel)
        if self.probs[STRATEGIES.index("prior")] > 0 and goal_sampler is None:
            raise ValueError("replay.relabel.prior > 0 needs a goal_sampler (a latent prior); td3 has none")
        self.reward_fn, self.goal_sampler, self.batch_hook = reward_fn, goal_sampler, batch_hook
        E, T = self.n_episodes, max_length
        self.achieved_is_obs = achieved_is_obs
        self.obs = np.zeros((E, T + 1, *obs_shape), obs_dtype)  # images: uint8
        goal_shape, goal_dtype = (tuple(obs_shape), obs_dtype) if achieved_is_obs else ((goal_dim,), np.float32)
        self.achieved = self.obs if achieved_is_obs else np.zeros((E, T + 1, *goal_shape), goal_dtype)
        self.goal = np.zeros((E, *goal_shape), goal_dtype)
        self.action = np.zeros((E, T, action_dim), np.float32)
        self.env_reward = np.zeros((E, T), np.float32)
        self.terminated = np.zeros((E, T), np.float32)
        self.length = np.zeros(E, np.int64)
        self.images = np.zeros((E, T + 1, *image_shape), np.uint8) if image_shape else None
        self.next_index, self.size = 0, 0

    @property
    def FIELDS(self) -> tuple[str, ...]:
        base = ("obs", "goal", "action", "env_reward", "terminated", "length")
        base = base if self.achieved_is_obs else base[:1] + ("achieved",) + base[1:]
        return base + ("images",) if self.images is not None else base

    @property
    def transitions(self) -> int:
        return int(self.length[: self.size].sum())

    def add_episode(self, obs, achieved, goal, action, env_reward, terminated, images=None) -> None:
        """One episode of n steps: obs and achieved (and images) have n+1 rows (the first is the reset)."""
        n = len(action)
        if not 0 < n <= self.max_length or len(obs) != n + 1 or len(achieved) != n + 1:
            raise ValueError(f"episode of {n} steps (obs {len(obs)}, achieved {len(achieved)}) "
                             f"does not fit max_length {self.max_length}")
        i = self.next_index
        self.obs[i, : n + 1], self.goal[i] = obs, goal
        if not self.achieved_is_obs:
            self.achieved[i, : n + 1] = achieved
        self.action[i, :n], self.env_reward[i, :n], self.terminated[i, :n] = action, env_reward, terminated
        self.length[i] = n
        if self.images is not None:
            self.images[i, : n + 1] = images
        self.next_index = (i + 1) % self.n_episodes
        self.size = min(self.size + 1, self.n_episodes)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        lengths = self.length[: self.size]
        # Uniform over stored transitions: an episode in proportion to its length, then a step in it.
        ep = rng.choice(self.size, size=batch_size, p=lengths / lengths.sum())
        n = lengths[ep]
        t = (rng.random(batch_size) * n).astype(np.int64)
        strategy = rng.choice(len(STRATEGIES), size=batch_size, p=self.probs)
        goal = self.goal[ep].copy()
        goal_step = np.full(batch_size, -1)  # the step of the achieved goal used, where one is

        pick = strategy == STRATEGIES.index("future")  # achieved goal at a step in (t, n]
        idx = t[pick] + 1 + (rng.random(pick.sum()) * (n[pick] - t[pick])).astype(np.int64)
        goal[pick], goal_step[pick] = self.achieved[ep[pick], idx], idx
        pick = strategy == STRATEGIES.index("episode")  # any achieved goal of the episode, [0, n]
        idx = (rng.random(pick.sum()) * (n[pick] + 1)).astype(np.int64)
        goal[pick] = self.achieved[ep[pick], idx]
        pick = strategy == STRATEGIES.index("buffer")  # any achieved goal in the buffer
        other = rng.integers(0, self.size, size=pick.sum())
        idx = (rng.random(pick.sum()) * (lengths[other] + 1)).astype(np.int64)
        goal[pick] = self.achieved[other, idx]
        pick = strategy == STRATEGIES.index("prior")
        if pick.any():
            goal[pick] = self.goal_sampler(int(pick.sum()), rng)
        pick = strategy == STRATEGIES.index("geometric")  # achieved goal k ~ Geom(1 - gamma) steps on, k <= n - t
        # An episode cut short (a time limit, a stop at the env's goal) has an unknown future: k is
        # drawn within it. One that ended in an absorbing state stays there: k is drawn from the
        # whole law and a k past the end lands on the final state.
        absorbed = self.terminated[ep[pick], n[pick] - 1] > 0
        steps_left = n[pick] - t[pick]
        k = truncated_geometric(self.geometric_discount, np.where(absorbed, ABSORBED_HORIZON, steps_left), rng)
        idx = t[pick] + np.minimum(k, steps_left)
        goal[pick], goal_step[pick] = self.achieved[ep[pick], idx], idx

        batch = {"action": self.action[ep, t], "goal": goal, "env_reward": self.env_reward[ep, t],
                 "terminated": self.terminated[ep, t], "t": t, "length": n, "strategy": strategy,
                 "goal_step": goal_step}
        for key in self.gathered:
            array = self.obs if key.endswith("obs") else self.achieved
            batch[key] = array[ep, t + 1 if key.startswith("next_") else t]
        if self.rewarded:
            batch["reward"] = self.reward_fn(batch["next_achieved"], goal, batch["env_reward"])
        return self.batch_hook(batch, rng) if self.batch_hook else batch

    def sample_images(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n stored frames, uniform over stored frames (fine-tuning data for the VAE)."""
        frames = self.length[: self.size] + 1
        ep = rng.choice(self.size, size=n, p=frames / frames.sum())
        t = (rng.random(n) * frames[ep]).astype(np.int64)
        return self.images[ep, t]

    def reencode(self, encoder: Callable[[np.ndarray], np.ndarray], batch_episodes: int = 16,
                 observation: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        """Replace every stored latent with `encoder(frames)` of its stored frame: `achieved` with the
        latents, `obs` with `observation(latents of one episode)` (default: the latents themselves)."""
        if self.images is None:
            raise ValueError("this replay keeps no images (image_shape=None): nothing to re-encode")
        for start in range(0, self.size, batch_episodes):
            eps = range(start, min(start + batch_episodes, self.size))
            frames = np.concatenate([self.images[e, : self.length[e] + 1] for e in eps])
            z = encoder(frames)
            offset = 0
            for e in eps:
                n = self.length[e] + 1
                latents = z[offset : offset + n]
                self.achieved[e, :n] = latents
                self.obs[e, :n] = latents if observation is None else observation(latents)
                offset += n

    # --- snapshots: only the filled part ----------------------------------------------
    def state_dict(self) -> dict:
        return {"next_index": self.next_index, "size": self.size,
                **{name: getattr(self, name)[: self.size].copy() for name in self.FIELDS}}

    def load_state_dict(self, state: dict) -> None:
        self.next_index, self.size = state["next_index"], state["size"]
        for name in self.FIELDS:
            getattr(self, name)[: self.size] = state[name]
