"""RIG, Reinforcement learning with Imagined Goals (Nair, Pong et al. 2018): TD3 on VAE latents.

What is RIG's own, and nothing else (the loop is agents/workspace.py, the latents agents/views.py):
  observation  z = the VAE encoder's mean of the camera image, the goal z_g of the goal image
               (section 3); `image_agents.latent_frames` stacks the last k
  reward       -||z' - z_g||, the latent distance (section 4.2)
  goals        exploration: an imagined goal from the VAE's fitted prior (section 4.4), or the
               env's own goal image (`image_agents.exploration_goals: env`); relabelling
               `rig.relabel`, by default half future latents, half imagined (section 4.3)
  fine-tuning  every `image_agents.finetune.every` episodes once learning has started, the VAE
               trains on dataset and replay frames, every stored latent is re-encoded and the
               prior refitted (section 4.1); 0 turns it off
The agent itself is TD3 (`image_agents.td3` overrides the td3 section).
"""

from __future__ import annotations

import numpy as np

from visgoal.agents.replay import negative_distance
from visgoal.agents.td3 import TD3Agent, TD3Config
from visgoal.device import resolve


def image_td3_config(params) -> TD3Config:
    """The td3 section with the image agents' overrides (`image_agents.td3`)."""
    return TD3Config.from_params({**params["td3"], **params["image_agents"]["td3"]})


class LatentGoals:
    """RIG's goals, for every agent on latents (rig, tdm, crl): each training episode pursues an
    imagined goal from the VAE's fitted prior (`exploration_goals: prior`, section 4.4) or the
    latent of the env's goal image (`env`), and every `finetune_every` episodes once learning has
    started the VAE is fine-tuned (section 4.1)."""

    exploration_goals = "env"
    finetune_every = 0

    def exploration_goal(self, view, step, rng: np.random.Generator) -> np.ndarray:
        return view.sample_prior(1, rng)[0] if self.exploration_goals == "prior" else view.goal(step)

    def explores_env_goals(self) -> bool:
        return self.exploration_goals == "env"

    def after_episode(self, view, replay, episodes: int, learning: bool, rng: np.random.Generator) -> dict:
        if view.tuner is None or not learning or episodes % self.finetune_every:
            return {}
        return view.finetune(replay, rng)


class RIGAgent(LatentGoals, TD3Agent):
    name = "rig"
    view = "latent"

    @classmethod
    def build(cls, params, view, action_low, action_high, rng: np.random.Generator) -> "RIGAgent":
        agent = cls(view.obs_dim + view.goal_dim, len(action_low), action_low, action_high,
                    image_td3_config(params), rng, resolve(params["device"]),
                    terminal_keeps_reward=True)  # -latent distance
        agent.configure(params)
        return agent

    def configure(self, params) -> None:
        """RIG's own settings, beside the TD3 ones."""
        self.exploration_goals = params["image_agents"]["exploration_goals"]
        self.finetune_every = params["image_agents"]["finetune"]["every"]

    def replay_options(self, params, view) -> dict:
        return {"relabel": params[self.name]["relabel"], "reward_fn": negative_distance,
                "goal_sampler": view.sample_prior}
