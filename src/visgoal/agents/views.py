"""What an agent sees: an observation view between the environment's steps and the agent.

A view turns a `Step` into the agent's observation, its achieved goal and the episode's
goal, once per step, for training rollouts, the replay and evaluation alike (rlkit's idea
of putting the VAE in front of the environment):

  StateView   the oracle: the simulator's state, the achieved and desired goal vectors
  LatentView  pixels only: z = the VAE encoder's mean of the camera image (RIG section 3), the
              goal z_g of the goal image; with `image_agents.latent_frames` k the observation is
              the last k latents. It owns the
              VAE, so it also owns what changes the VAE:
              online fine-tuning (RIG section 4.1) and re-encoding the replay after it.
  PixelView   pixels only, and no model: the camera image itself (uint8, H x W x 3) and the
              goal image; the agent learns its own encoder (crl's `pixels` representation).

A view keeps one episode's state (the previous latent, the encoded goal): `reset()` at
each episode's start.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from visgoal.agents.replay import EpisodeReplay
from visgoal.vae.model import beta_vae_loss


class View:
    """What every view answers; the defaults are those of a view with no model (state, pixels)."""

    kind = ""
    needs_images = True
    goal_conditioned = True
    dtype = np.float32
    tuner = None            # no model to fine-tune
    keeps_frames = False    # whether the replay keeps each step's image (fine-tuning re-encodes them)
    achieved_is_obs = False  # whether the achieved goal is the observation itself (an image)

    def reset(self) -> None:
        """An episode begins: nothing to forget."""

    def for_episode(self) -> "View":
        """A view of its own for one episode among several run together (`run_episodes`): the
        same model, its own episode's state."""
        view = copy.copy(self)
        view.reset()
        return view

    def codes(self, images: list) -> "np.ndarray | None":
        """What `observe` and `goal` compute from pictures, for a batch of them in one call (the
        latents); None for a view with no model."""
        return None

    def latent_distance(self, achieved: np.ndarray, goal: np.ndarray) -> str:
        return ""  # no latent space

    def episode_stats(self, achieved: np.ndarray, goal: np.ndarray, rewards: list[float]) -> dict:
        """What a finished training episode shows of its own goal (beside its true success)."""
        return {}

    def input_files(self) -> dict[str, Path]:
        """The files the view reads, by name: part of a run's fingerprint and MLflow tags."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def save(self, run_dir: Path, env_steps: int = 0) -> None:
        """Nothing beside policy.pt: no model of its own."""


class StateView(View):
    kind = "state"
    needs_images = False

    def __init__(self, goal_conditioned: bool, obs_dim: int, goal_dim: int):
        """`goal_conditioned=False` (td3 on inverted_pendulum): no goal, the env's own reward."""
        self.goal_conditioned = goal_conditioned
        self.obs_dim, self.goal_dim = obs_dim, goal_dim if goal_conditioned else 0
        self.obs_shape = (self.obs_dim,)

    def observe(self, step, code=None) -> tuple[np.ndarray, np.ndarray]:
        """(agent observation, achieved goal) of a step (`code`: `codes`' row, which it has none of)."""
        return step.state, step.achieved_goal if self.goal_conditioned else np.zeros(0, np.float32)

    def goal(self, step, code=None) -> np.ndarray:
        return step.desired_goal if self.goal_conditioned else np.zeros(0, np.float32)

    def reward(self, step) -> float:
        """The protocol's return: -distance to the goal, or the env's own reward."""
        return -step.distance if self.goal_conditioned else step.reward

    def episode_stats(self, achieved: np.ndarray, goal: np.ndarray, rewards: list[float]) -> dict:
        return {"charts/episode_return": sum(rewards) if not self.goal_conditioned else
                -float(np.sum(np.linalg.norm(achieved[1:] - goal, axis=-1)))}

    def meta(self) -> dict:
        return {"kind": self.kind, "goal_conditioned": self.goal_conditioned}


def stacked_latents(z: np.ndarray, frames: int) -> np.ndarray:
    """Each step's last `frames` latents [z_(t-k+1), ..., z_t], oldest first, (n, k * d), from one
    episode's latents (n, d): DrQ-v2's frame stack, on latents. Before an episode's first step the
    first latent repeats, as DrQ-v2 repeats its first frame."""
    steps = np.arange(len(z))[:, None] - np.arange(frames - 1, -1, -1)
    return z[np.maximum(steps, 0)].reshape(len(z), -1)


class VAEFineTuner:
    """Online VAE training on a mixture of dataset frames and replay frames (RIG section 4.1)."""

    def __init__(self, vae, dataset_frames: np.ndarray, cfg: dict, vae_cfg: dict):
        self.vae, self.frames, self.cfg = vae, dataset_frames, cfg
        self.beta, self.recon_kind = vae_cfg["beta"], vae_cfg["recon_loss"]
        self.opt = torch.optim.Adam(vae.parameters(), lr=cfg["lr"])

    def batch(self, replay: EpisodeReplay, n: int, rng: np.random.Generator) -> np.ndarray:
        """n frames: a `replay_fraction` share from the replay, the rest from the dataset."""
        from_replay = int(round(n * self.cfg["replay_fraction"]))
        dataset = self.frames[rng.integers(0, len(self.frames), n - from_replay)]
        return np.concatenate([dataset, replay.sample_images(from_replay, rng)])

    def fit(self, replay: EpisodeReplay, rng: np.random.Generator) -> dict:
        self.vae.train()
        total = {"recon": 0.0, "kl": 0.0}
        for _ in range(self.cfg["steps"]):
            x = self.vae.to_input(self.batch(replay, self.cfg["batch_size"], rng))
            loss, recon, kl = beta_vae_loss(self.vae, x, self.beta, self.recon_kind)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total["recon"] += recon.item() / self.cfg["steps"]
            total["kl"] += kl.item() / self.cfg["steps"]
        self.vae.eval()
        # The fitted prior follows the data the VAE now sees (RIG section 4.3).
        self.vae.set_prior(torch.from_numpy(self.vae.encode(self.batch(replay, min(len(self.frames), 4096), rng))))
        return {f"vae_finetune/{k}": v for k, v in total.items()}


def read_dataset_sample(path: Path, n: int, seed: int) -> np.ndarray:
    """n frames of the VAE dataset (all if it has fewer), picked with a seeded generator."""
    from visgoal.data import ImageDataset
    from visgoal.vae.lightning import read_frames_at

    data = ImageDataset(path)
    try:
        rng = np.random.default_rng(seed)
        return read_frames_at(data, np.sort(rng.choice(len(data), min(n, len(data)), replace=False)))
    finally:
        data.close()


class LatentView(View):
    kind = "latent"

    def __init__(self, vae, tuner: VAEFineTuner | None = None, frames: int = 1, files: dict[str, Path] | None = None):
        """`files`: what it was made from, by name (the VAE, and its dataset when fine-tuning)."""
        self.vae, self.frames, self.tuner, self.files = vae, int(frames), tuner, dict(files or {})
        self.goal_dim = vae.latent_dim
        self.obs_dim = self.frames * vae.latent_dim
        self.obs_shape = (self.obs_dim,)
        self.reset()

    @classmethod
    def from_params(cls, params, vae_path: Path, dataset_path: Path, seed: int) -> "LatentView":
        """The VAE of `vae_path`, checked against render.image_size and vae.latent_dim, and its fine-tuner if
        `image_agents.finetune.every` > 0 (fed from `dataset_path`)."""
        from visgoal.device import resolve
        from visgoal.vae import load_vae

        vae = load_vae(vae_path, resolve(params["device"]))  # a missing or foreign checkpoint fails here, in one line
        image_size = params["render"]["image_size"]
        if image_size != vae.image_size:
            raise ValueError(f"{vae_path}: the VAE was trained on {vae.image_size}px images but "
                             f"render.image_size is {image_size}; retrain the VAE or change render.image_size")
        if params["vae"]["latent_dim"] != vae.latent_dim:  # the run's recorded params would not be what it read
            raise ValueError(f"{vae_path}: the VAE has {vae.latent_dim} latent dimensions but vae.latent_dim is "
                             f"{params['vae']['latent_dim']}; pass --set vae.latent_dim={vae.latent_dim} or the VAE "
                             f"trained with these parameters")
        cfg = params["image_agents"]
        finetune, tuner = cfg["finetune"], None
        if finetune["every"] > 0:
            frames = read_dataset_sample(dataset_path, finetune["dataset_frames"], seed)
            tuner = VAEFineTuner(vae, frames, finetune, params["vae"])
        files = {"VAE": Path(vae_path), **({"VAE dataset": Path(dataset_path)} if tuner is not None else {})}
        return cls(vae, tuner, cfg["latent_frames"], files)

    @property
    def keeps_frames(self) -> bool:
        return self.tuner is not None

    def input_files(self) -> dict[str, Path]:
        return self.files

    def episode_stats(self, achieved: np.ndarray, goal: np.ndarray, rewards: list[float]) -> dict:
        latent = np.linalg.norm(achieved[1:] - goal, axis=-1)
        return {"charts/episode_latent_return": -float(latent.sum()),
                "charts/episode_latent_final_distance": float(latent[-1])}

    # --- one episode ----------------------------------------------------------------------
    def reset(self) -> None:
        self.past, self.goal_z = [], None  # the episode's latents so far (the last `frames` at most)

    def encode(self, images: np.ndarray) -> np.ndarray:
        return self.vae.encode(images)

    def codes(self, images: list) -> np.ndarray:
        # One picture goes in as `observe` sends it (a view with a batch stride of 0), for the same
        # convolution path and so the same latent to the last bit; a stack is a batch of its own.
        return self.encode(images[0][None] if len(images) == 1 else np.stack(images))

    def observe(self, step, code=None) -> tuple[np.ndarray, np.ndarray]:
        """`code`: the picture's latent, if a batch's `codes` made it."""
        z = self.encode(step.image[None])[0] if code is None else code
        self.past = (self.past + [z])[-self.frames:]
        return self.episode_observations(np.stack(self.past))[-1], z

    def goal(self, step, code=None) -> np.ndarray:
        """The latent of the episode's goal image, encoded once per episode (`code`: made already)."""
        if self.goal_z is None:
            self.goal_z = self.encode(step.goal_image[None])[0] if code is None else code
        return self.goal_z

    def reward(self, step) -> float:
        """Evaluation scores the true distance, whatever the agent was trained on."""
        return -step.distance

    def latent_distance(self, achieved: np.ndarray, goal: np.ndarray) -> float:
        return float(torch.linalg.vector_norm(torch.from_numpy(achieved) - torch.from_numpy(goal)))

    def sample_prior(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Imagined goals: n latents from the VAE's fitted prior (RIG section 4.3)."""
        return self.vae.sample_prior(n, rng)

    # --- what changes the VAE ---------------------------------------------------------------
    def episode_observations(self, z: np.ndarray) -> np.ndarray:
        """The observations of one episode's latents (n, d) at once: what `observe` gave step by step."""
        return stacked_latents(z, self.frames)

    def finetune(self, replay: EpisodeReplay, rng: np.random.Generator) -> dict:
        """Train the VAE on dataset and replay frames, then re-encode every stored latent."""
        metrics = self.tuner.fit(replay, rng)
        replay.reencode(self.encode, observation=self.episode_observations)
        return metrics

    # --- files ------------------------------------------------------------------------------
    def meta(self) -> dict:
        return {"kind": self.kind, "latent_dim": self.vae.latent_dim, "latent_frames": self.frames}

    def state_dict(self) -> dict:
        state = {"vae": self.vae.state_dict()}
        if self.tuner is not None:
            state["vae_opt"] = self.tuner.opt.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.vae.load_state_dict(state["vae"])
        if self.tuner is not None:
            self.tuner.opt.load_state_dict(state["vae_opt"])

    def save(self, run_dir: Path, env_steps: int = 0) -> None:
        """The run's vae.pt: the VAE the policy acts through (fine-tuned or not); evaluate reads it."""
        from visgoal.paths import RUN_VAE
        from visgoal.vae import save_vae

        save_vae(self.vae, Path(run_dir) / RUN_VAE, {"env_steps": env_steps})


class PixelView(View):
    """The camera image as the observation and the achieved goal, the goal image as the goal."""

    kind = "pixels"
    dtype = np.uint8
    achieved_is_obs = True

    def __init__(self, image_size: int):
        self.obs_shape = (image_size, image_size, 3)
        self.obs_dim = self.goal_dim = int(np.prod(self.obs_shape))

    def observe(self, step, code=None) -> tuple[np.ndarray, np.ndarray]:
        return step.image, step.image

    def goal(self, step, code=None) -> np.ndarray:
        return step.goal_image

    def reward(self, step) -> float:
        """Evaluation scores the true distance."""
        return -step.distance

    def meta(self) -> dict:
        return {"kind": self.kind, "image_size": self.obs_shape[0]}


def load_view(meta: dict, run_dir: Path, vae: Path | None = None, device: str = "cpu"):
    """The view a saved policy acts through: its state view, or its run's (or the given) VAE on `device`."""
    from visgoal.paths import RUN_VAE
    from visgoal.vae import load_vae

    if meta["kind"] == "state":
        return StateView(meta["goal_conditioned"], 0, 0)
    if meta["kind"] == "pixels":
        return PixelView(meta["image_size"])
    return LatentView(load_vae(vae or Path(run_dir) / RUN_VAE, device), frames=meta.get("latent_frames", 1))


def make_view(kind: str, params, first, goal_conditioned: bool, vae_path: Path, dataset_path: Path, seed: int):
    """A training run's view of `kind` (its method's `view_kind`): the state, sized by the env's first
    step; the VAE of `vae_path` (fine-tuned on `dataset_path`'s frames); or the camera image."""
    if kind == "latent":
        return LatentView.from_params(params, vae_path, dataset_path, seed)
    if kind == "pixels":
        return PixelView(params["render"]["image_size"])
    return StateView(goal_conditioned, len(first.state), len(first.desired_goal))
