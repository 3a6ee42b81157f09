"""Goal-conditioned behaviour cloning from image demonstrations, offline: no reward, no critic and no
exploration. Its objective is GCSL's (Ghosh et al. 2021, section 4: the likelihood of the action taken,
given the state and a goal the trajectory reached later) on fixed demonstrations, which is OGBench's
GCBC baseline.

Each batch is demonstration steps (s_t, a_t) with a goal relabelled from the same demonstration's
future, the picture of a step uniform in (t, T] (OGBench's `actor_p_trajgoal` 1 with uniform
offsets: the replay's `future` strategy), and the actor pi(s, g) regresses the demonstrated
action: mean squared error in the agents' [-1, 1] box (a Gaussian of fixed scale's negative
log-likelihood, as OGBench's GCBC, up to a constant). Evaluation acts with pi on the env's own goal
images.

Two representations (`gcbc.representation`), both from the camera image alone:
  latent  the actor reads the VAE's latents (LatentView, as rig, tdm and crl on latents)
  pixels  a convolutional encoder reads the images (PixelView; crl's encoder, DrQ's random shift
          on observations and goals), trained by the cloning loss itself

An offline method runs in the Workspace without stepping its env: its clock is its updates
(`train.total_steps` of them; curve.csv's `env_steps` column counts updates for it), and the env
steps it used are its demonstrations' (the run's `demo_steps`).
"""

from __future__ import annotations

import numpy as np
import torch

from visgoal.agents.actor import ActorTrainer, OwnsActor, actor_file, load_actor
from visgoal.agents.base import Agent
from visgoal.agents.encoders import ConvEncoder, PixelActor, encoded_actor, random_shift, with_encoder
from visgoal.agents.networks import Actor
from visgoal.agents.policy import Policy
from visgoal.agents.replay import no_reward
from visgoal.config import Section
from visgoal.device import resolve

REPRESENTATIONS = ("latent", "pixels")


class GCBCConfig(Section):
    """The `gcbc` section of params.yaml."""

    section = "gcbc"


class GCBCAgent(OwnsActor, Agent):
    name = "gcbc"
    view = "latent"
    offline = True  # learns from demonstrations only: the Workspace never steps its env for it
    batch_keys = ("obs", "goal", "action")

    def __init__(self, obs_dim: int, goal_dim: int, action_dim: int, action_low, action_high, cfg: GCBCConfig,
                 image_size: int = 0, device: str = "cpu"):
        if cfg.representation not in REPRESENTATIONS:
            raise ValueError(f"gcbc.representation: unknown '{cfg.representation}' (choose latent or pixels)")
        self.cfg, self.encoder = cfg, None
        if cfg.representation == "pixels":
            self.encoder = ConvEncoder(image_size, cfg.pixels["feature_dim"],
                                       cfg.pixels["precision"] == "bf16-mixed").to(device)
            obs_dim = goal_dim = cfg.pixels["feature_dim"]
        self.obs_dim = obs_dim
        # latents get a running normalizer; the encoder's features are bounded already
        self.actor = Actor(obs_dim + goal_dim, action_dim, list(cfg.hidden), action_low, action_high,
                           self.encoder is None).to(device)
        self.trainer = ActorTrainer(self.actor, cfg.lr)
        if self.encoder is not None:  # the encoder learns from the cloning loss, in the actor's optimizer
            self.trainer.opt.add_param_group({"params": list(self.encoder.parameters())})
        self.num_updates = 0

    @classmethod
    def view_kind(cls, params) -> str:
        return params["gcbc"]["representation"]

    @classmethod
    def build(cls, params, view, action_low, action_high, rng: np.random.Generator) -> "GCBCAgent":
        return cls(view.obs_dim, view.goal_dim, len(action_low), action_low, action_high,
                   GCBCConfig.from_params(params["gcbc"]), params["render"]["image_size"], resolve(params["device"]))

    @property
    def batch_size(self) -> int:
        return self.cfg.batch_size

    def replay_options(self, params, view) -> dict:
        """Every goal is a picture later in the same demonstration; no reward."""
        return {"relabel": {"future": 1.0}, "reward_fn": no_reward}

    def policy(self, training: bool) -> Policy:
        return Policy(self.actor if self.encoder is None else PixelActor(self.encoder, self.actor))

    def update(self, batch: dict[str, torch.Tensor]) -> dict:
        if self.encoder is None:
            x = torch.cat([batch["obs"], batch["goal"]], dim=-1)
            self.actor.normalizer.update(x)
            x = self.actor.normalizer(x)
        else:
            images = torch.cat([batch["obs"], batch["goal"]])
            if self.cfg.pixels["shift"] > 0:
                images = random_shift(images, self.cfg.pixels["shift"])
            x = torch.cat(self.encoder(images).chunk(2), dim=-1)
        loss = ((self.actor.from_normalized(x) - batch["action"]) ** 2).sum(-1).mean()
        self.num_updates += 1
        return {"losses/bc": loss.item(), **self.actor_step(loss)}

    # --- files ------------------------------------------------------------------------------
    def nets(self) -> tuple[str, ...]:
        return ("actor", "actor_opt") + (("encoder",) if self.encoder is not None else ())

    def state_dict(self) -> dict:
        return {**super().state_dict(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.num_updates = state["num_updates"]

    def policy_file(self) -> dict:
        return with_encoder(actor_file(self.actor, self.actor, list(self.cfg.hidden), self.encoder is None), self.encoder)

    @classmethod
    def load_policy(cls, saved: dict, device: str = "cpu") -> Policy:
        return Policy(encoded_actor(saved, load_actor(saved, device), device))
