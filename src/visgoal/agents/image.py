"""The image agents, RIG and TDM: TD3 on VAE latents, trained from pixels alone.

What differs from the state-based Workspace, and nothing else:
  observation   z = VAE encoder mean of the camera image; the achieved goal is z itself.
                With `image_agents.latent_velocity` the agent sees [z_t, z_t - z_(t-1)]: one
                image shows no velocity, and a ball or a pendulum has momentum
  goal          exploration: an imagined goal from the VAE's fitted prior (RIG section 4.4),
                or the env's own goal image (`image_agents.exploration_goals: env`);
                evaluation: the protocol's real goal image, encoded by the current VAE
  reward        rig: -||z' - z_g|| (RIG section 4.2); tdm: its own target (agents/tdm.py)
  relabelling   `rig.relabel` / `tdm.relabel`, by default half future, half prior
  fine-tuning   every `image_agents.finetune.every` episodes the VAE trains on a mixture of
                its dataset and the replay's frames (RIG section 4.1); then every stored
                latent is re-encoded and the prior refitted. 0 turns it off.
The run directory also gets `vae.pt`, the VAE the policy was trained with.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from visgoal.agents.replay import EpisodeReplay, negative_distance
from visgoal.agents.tdm import TDMAgent, TDMConfig, countdown, horizon_hook
from visgoal.agents.td3 import TD3Agent, TD3Config
from visgoal.agents.workspace import Workspace
from visgoal.evaluation import LatentPolicy, latent_observation
from visgoal.vae.model import kl_divergence, reconstruction_loss

log = logging.getLogger("visgoal")


def velocity_observations(z: np.ndarray) -> np.ndarray:
    """`latent_observation` over one episode's latents (n, d) at once: (n, 2d)."""
    return latent_observation(z, np.concatenate([z[:1], z[:-1]]))


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
            logits, mean, logvar = self.vae(x)
            recon, kl = reconstruction_loss(logits, x, self.recon_kind), kl_divergence(mean, logvar)
            loss = recon + self.beta * kl
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


class ImageWorkspace(Workspace):
    def __init__(self, env_name: str, method: str, seed: int, out_dir: Path, params, vae_path: Path,
                 dataset_path: Path, progress: bool = True):
        self.vae_path, self.dataset_path = Path(vae_path), Path(dataset_path)
        self.image_cfg, self.method_cfg = params["image_agents"], params[method]
        super().__init__(env_name, method, seed, out_dir, params, progress)

    def build(self):
        from visgoal.envs import make_env
        from visgoal.vae import load_vae

        params = self.params
        self.vae = load_vae(self.vae_path)  # a missing or foreign checkpoint fails here, in one line
        image_size = params["render"]["image_size"]
        if image_size != self.vae.image_size:
            raise ValueError(f"{self.vae_path}: the VAE was trained on {self.vae.image_size}px images but "
                             f"render.image_size is {image_size}; retrain the VAE or change render.image_size")
        self.env = make_env(self.env_name, image_size=image_size)
        self.eval_env = make_env(self.env_name, image_size=image_size)
        self.goal_conditioned = True
        first = self.env.reset(seed=self.seed)
        d, action_dim = self.vae.latent_dim, self.env.action_space.shape[0]
        self.velocity = bool(self.image_cfg["latent_velocity"])
        obs_dim = 2 * d if self.velocity else d
        self.last_z = None
        td3 = TD3Config(**{f.name: {**params["td3"], **self.image_cfg["td3"]}[f.name] for f in fields(TD3Config)})
        low, high = self.env.action_space.low, self.env.action_space.high
        if self.method == "tdm":
            self.tdm = TDMConfig(**{f.name: self.method_cfg[f.name] for f in fields(TDMConfig)})
            self.agent = TDMAgent(d, action_dim, low, high, td3, self.tdm, self.rng,
                                  self.vae.prior_mean, self.vae.prior_std, obs_dim=obs_dim)
            hook = horizon_hook(self.tdm.tau_max)
        else:
            self.tdm, hook = None, None
            self.agent = TD3Agent(obs_dim + d, action_dim, low, high, td3, self.rng)
        finetune = self.image_cfg["finetune"]
        self.replay = EpisodeReplay(
            params["replay"]["capacity"], self.env.spec.episode_length, (obs_dim,), d, action_dim,
            relabel=self.method_cfg["relabel"], reward_fn=negative_distance, goal_sampler=self.sample_prior,
            batch_hook=hook, image_shape=first.image.shape if finetune["every"] > 0 else None)
        self.tuner = None
        if finetune["every"] > 0:
            frames = read_dataset_sample(self.dataset_path, finetune["dataset_frames"], self.seed)
            self.tuner = VAEFineTuner(self.vae, frames, finetune, params["vae"])
        critic = self.agent.critic if self.tdm and self.tdm.action_selection == "argmax" else None
        self.policy = LatentPolicy(self.vae, self.agent.actor, self.tdm, critic, velocity=self.velocity)
        return first

    # --- the differences ----------------------------------------------------------------------
    def sample_prior(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Imagined goals: n latents from the VAE's fitted diagonal Gaussian prior."""
        mean, std = self.vae.prior_mean.numpy(), self.vae.prior_std.numpy()
        return (mean + rng.standard_normal((n, len(mean))) * std).astype(np.float32)

    def encode(self, images: np.ndarray) -> np.ndarray:
        return self.vae.encode(images)

    def episode_goal(self, step) -> np.ndarray:
        if self.image_cfg["exploration_goals"] == "prior":
            return self.sample_prior(1, self.rng)[0]
        return self.encode(step.goal_image[None])[0]

    def begin_episode(self) -> None:
        self.last_z = None

    def observe(self, step) -> tuple[np.ndarray, np.ndarray]:
        z = self.encode(step.image[None])[0]
        obs = latent_observation(z, self.last_z) if self.velocity else z
        self.last_z = z
        return obs, z

    def act(self, obs: np.ndarray, goal: np.ndarray, t: int) -> np.ndarray:
        if self.tdm is not None:
            return self.agent.act(obs, goal, self.env_steps, eval_mode=False, tau=countdown(t, self.tdm.tau_max))
        return self.agent.act(obs, goal, self.env_steps, eval_mode=False)

    def episode_metrics(self, achieved: np.ndarray, goal: np.ndarray, rewards: list[float], step) -> dict:
        latent = np.linalg.norm(achieved[1:] - goal, axis=-1)
        stats = {"charts/episode_latent_return": -float(latent.sum()),
                 "charts/episode_latent_final_distance": float(latent[-1])}
        if self.image_cfg["exploration_goals"] == "env":  # a real goal: its true distance too
            stats.update({"charts/episode_success": float(step.success),
                          "charts/episode_final_distance": step.distance})
        return stats

    def after_episode(self) -> None:
        every = self.image_cfg["finetune"]["every"]
        if self.tuner is None or self.episodes % every or self.env_steps < self.cfg["learning_starts"]:
            return
        import mlflow

        metrics = self.tuner.fit(self.replay, self.rng)
        self.replay.reencode(self.encode, observation=velocity_observations if self.velocity else None)
        if self.tdm is not None:
            self.agent.set_prior(self.vae.prior_mean, self.vae.prior_std)
        mlflow.log_metrics(metrics, step=self.env_steps)
        log.debug("fine-tuned the VAE at env step %d: %s", self.env_steps, metrics)

    # --- files --------------------------------------------------------------------------------
    def extra_state(self) -> dict:
        state = {"vae": self.vae.state_dict()}
        if self.tuner is not None:
            state["vae_opt"] = self.tuner.opt.state_dict()
        return state

    def load_extra_state(self, state: dict) -> None:
        self.vae.load_state_dict(state["vae"])
        if self.tuner is not None:
            self.tuner.opt.load_state_dict(state["vae_opt"])
        if self.tdm is not None:
            self.agent.set_prior(self.vae.prior_mean, self.vae.prior_std)

    def policy_file(self) -> dict:
        saved = super().policy_file()
        saved["meta"]["latent_dim"] = self.vae.latent_dim
        saved["meta"]["latent_velocity"] = self.velocity
        if self.tdm is not None:
            saved["meta"]["tdm"] = {f.name: getattr(self.tdm, f.name) for f in fields(TDMConfig)}
            if self.tdm.action_selection == "argmax":
                saved["critic"] = self.agent.critic.state_dict()
        return saved

    def save_policy(self) -> None:
        """policy.pt and the VAE it acts through (fine-tuned or not): evaluate reads both."""
        from visgoal.vae.train import save_checkpoint

        save_checkpoint(self.vae, self.out_dir / "vae.pt", {"env_steps": self.env_steps})
        super().save_policy()
