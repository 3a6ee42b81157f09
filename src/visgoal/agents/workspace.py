"""The Workspace: owns the environment, replay buffer, agent, logger and snapshots.

`train()` is what `python -m visgoal train` calls. A run writes into its out_dir:
  checkpoint.pt  - everything needed to continue (weights, optimizers, replay, counters,
                   numpy/torch/env RNG states); written atomically every
                   `train.checkpoint_every` env steps, at an episode boundary
  curve.csv      - env_steps, eval_success_rate, eval_final_distance, eval_return, wall_clock_s
  policy.pt      - the final actor: {"weights": state_dict, "meta": {...}}, loadable with
                   torch.load(weights_only=True)
A run killed at any moment and started again with the same command continues from
its last checkpoint, in the same MLflow run.
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from visgoal.agents.replay import EpisodeReplay, env_reward, negative_distance
from visgoal.agents.td3 import TD3Agent, TD3Config
from visgoal.evaluation import StatePolicy, evaluate_policy, summary
from visgoal.files import atomic_output

log = logging.getLogger("visgoal")

CURVE_COLUMNS = ("env_steps", "eval_success_rate", "eval_final_distance", "eval_return", "eval_latent_distance",
                 "wall_clock_s")


def set_seed_everywhere(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def train(env: str, method: str, seed: int, out_dir, params, vae=None, dataset=None, progress: bool = True) -> Path:
    """Train one agent; `vae`/`dataset` (image methods) default to results/<env>/vae.pt and vae_dataset.h5."""
    if method in ("tdm", "rig"):
        from visgoal.agents.image import ImageWorkspace

        vae = Path(vae) if vae else Path("results") / env / "vae.pt"
        dataset = Path(dataset) if dataset else Path("results") / env / "vae_dataset.h5"
        workspace = ImageWorkspace(env, method, seed, Path(out_dir), params, vae, dataset, progress)
    elif method == "td3":
        workspace = Workspace(env, method, seed, Path(out_dir), params, progress)
    else:
        raise ValueError(f"unknown method '{method}' (choose td3, tdm or rig)")
    try:
        workspace.run()
    finally:
        workspace.close()
    return Path(out_dir)


class Workspace:
    def __init__(self, env_name: str, method: str, seed: int, out_dir: Path, params, progress: bool = True):
        torch.set_num_threads(1)  # small networks: threads only contend on a shared machine
        self.env_name, self.method, self.seed, self.out_dir, self.params = env_name, method, seed, out_dir, params
        self.cfg, self.progress = params["train"], progress
        self.rng = set_seed_everywhere(seed)
        self.first = self.build()  # the seeded reset: the first episode starts from it
        self.needs_reset = False
        self.env_steps, self.episodes, self.wall_clock = 0, 0, 0.0
        self.next_eval, self.next_checkpoint = self.cfg["eval_every"], self.cfg["checkpoint_every"]
        self.curve: list[dict] = []
        self.episode_stats: dict[str, float] = {}  # the latest finished episode, logged with the losses
        self.run_id: str | None = None

    def build(self):
        """Make env, eval_env, agent, replay and policy; return the first (seeded) reset."""
        from visgoal.envs import make_env

        params = self.params
        self.env = make_env(self.env_name, render_images=False)
        self.eval_env = make_env(self.env_name, render_images=False)
        # The state baseline learns the env's own reward where the goal is not the task (inverted_pendulum).
        self.goal_conditioned = self.env_name not in params["td3"]["env_reward_envs"]
        first = self.env.reset(seed=self.seed)
        goal_dim = len(first.desired_goal) if self.goal_conditioned else 0
        action_dim = self.env.action_space.shape[0]
        td3 = TD3Config(**{f.name: params["td3"][f.name] for f in fields(TD3Config)})
        self.agent = TD3Agent(len(first.state) + goal_dim, action_dim, self.env.action_space.low,
                              self.env.action_space.high, td3, self.rng)
        replay = params["replay"]
        self.replay = EpisodeReplay(
            replay["capacity"], self.env.spec.episode_length, first.state.shape, goal_dim, action_dim,
            relabel=replay["relabel"] if self.goal_conditioned else {},
            reward_fn=negative_distance if self.goal_conditioned else env_reward)
        self.policy = StatePolicy(self.agent.actor, self.goal_conditioned)
        return first

    # --- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        import mlflow
        from tqdm import tqdm

        from visgoal.tracking import base_tags, experiment_name, init_store, run_name

        resumed = self.load_checkpoint()
        init_store()
        experiment = mlflow.set_experiment(experiment_name(self.env_name))
        if self.run_id and mlflow.MlflowClient().search_runs(
                [experiment.experiment_id], filter_string=f"attributes.run_id = '{self.run_id}'"):
            mlflow.start_run(run_id=self.run_id)
        else:
            if self.run_id:  # the store was moved or deleted since the checkpoint: a fresh MLflow run
                log.warning("MLflow run %s of the checkpoint is not in the store; logging to a new run", self.run_id)
            mlflow.start_run(run_name=run_name(self.method, self.seed),
                             tags=base_tags(self.env_name, self.method, self.params.profile, self.seed))
            self.run_id = mlflow.active_run().info.run_id
            mlflow.log_params({k: str(v)[:500] for k, v in self.params.flat().items()})
        if resumed:
            log.info("resumed %s from its checkpoint at env step %d", self.out_dir, self.env_steps)
        total = self.cfg["total_steps"]
        self.bar = tqdm(total=total, initial=self.env_steps, unit="step", desc=f"{self.env_name}/{self.method}",
                        disable=not self.progress)
        started, cpu_started, start_steps = time.monotonic(), time.process_time(), self.env_steps
        self.start_wall = time.monotonic() - self.wall_clock
        self.last_log = (self.start_wall, 0)  # (time, env steps) of the previous metrics log
        try:
            while self.env_steps < total:
                self.run_episode(total)
                if self.env_steps >= self.next_eval or self.env_steps >= total:
                    self.evaluate()
                    self.next_eval = (self.env_steps // self.cfg["eval_every"] + 1) * self.cfg["eval_every"]
                if self.env_steps >= self.next_checkpoint or self.env_steps >= total:
                    self.save_checkpoint()
                    self.next_checkpoint = (self.env_steps // self.cfg["checkpoint_every"] + 1) * \
                        self.cfg["checkpoint_every"]
            if not self.curve or self.curve[-1]["env_steps"] != self.env_steps:
                self.evaluate()
            self.write_curve()  # also when a finished run is started again (its outputs were removed)
            self.save_policy()
            # Per CPU-second too: on a shared machine wall-clock speed says more about the neighbours.
            steps = self.env_steps - start_steps
            sps = steps / max(time.monotonic() - started, 1e-9)
            cpu_sps = steps / max(time.process_time() - cpu_started, 1e-9)
            mlflow.log_metrics({"charts/run_steps_per_second": sps, "charts/run_steps_per_cpu_second": cpu_sps},
                               step=self.env_steps)
            log.info("trained %s/%s seed %d: %d env steps (this session: %.0f steps/s, %.0f per CPU-second, "
                     "evaluations included), eval success %.3f -> %s", self.env_name, self.method, self.seed,
                     self.env_steps, sps, cpu_sps, self.curve[-1]["eval_success_rate"], self.out_dir)
            mlflow.end_run()
        except BaseException:
            mlflow.end_run(status="KILLED")
            raise
        finally:
            self.bar.close()

    def run_episode(self, total: int) -> None:
        """Act for one episode (random actions before learning_starts), updating every step after it."""
        step = self.env.reset() if self.needs_reset else self.first
        self.needs_reset = True
        self.agent.noise.reset()
        self.begin_episode()
        goal = self.episode_goal(step)
        first_obs, first_achieved = self.observe(step)
        obs, achieved, actions, rewards, terminated = [first_obs], [first_achieved], [], [], []
        images = [step.image] if self.replay.images is not None else None
        metrics: list[dict] = []
        while not (step.terminated or step.truncated) and self.env_steps < total:
            if self.env_steps < self.cfg["learning_starts"]:
                action = self.rng.uniform(-1.0, 1.0, self.env.action_space.shape)
            else:
                action = self.act(obs[-1], goal, len(actions))
            step = self.env.step(self.agent.env_action(action))
            next_obs, next_achieved = self.observe(step)
            obs.append(next_obs), achieved.append(next_achieved), actions.append(action)
            if images is not None:
                images.append(step.image)
            # A goal-reaching task has no terminal states: an env that stops at its own goal (the
            # kitchen) says nothing about relabelled goals, and -distance is ~0 from there on anyway.
            rewards.append(step.reward), terminated.append(step.terminated and not self.goal_conditioned)
            self.env_steps += 1
            if self.env_steps >= self.cfg["learning_starts"] and self.replay.size > 0:
                for _ in range(self.cfg["updates_per_step"]):
                    metrics.append(self.agent.update(self.sample()))
            if self.env_steps % self.cfg["log_every"] == 0 and metrics:
                self.log_metrics(metrics)
                metrics = []
        self.replay.add_episode(np.array(obs), np.array(achieved), goal, np.array(actions), np.array(rewards),
                                np.array(terminated, dtype=np.float32), images=None if images is None else np.array(images))
        self.episodes += 1
        self.bar.update(len(actions))
        self.episode_stats = self.episode_metrics(np.array(achieved), goal, rewards, step)
        self.after_episode()

    # --- what the image agents change -------------------------------------------------------
    def begin_episode(self) -> None:
        """Called after each reset, before the episode's first observation."""

    def episode_goal(self, step) -> np.ndarray:
        """The goal pursued this episode: the env's own (state-based baseline)."""
        return self.policy.goal(step)

    def observe(self, step) -> tuple[np.ndarray, np.ndarray]:
        """(agent observation, achieved goal) of a step."""
        return step.state, step.achieved_goal if self.goal_conditioned else np.zeros(0, np.float32)

    def act(self, obs: np.ndarray, goal: np.ndarray, t: int) -> np.ndarray:
        """An exploratory action in [-1, 1] at episode step t."""
        return self.agent.act(obs, goal, self.env_steps, eval_mode=False)

    def episode_metrics(self, achieved: np.ndarray, goal: np.ndarray, rewards: list[float], step) -> dict:
        ret = sum(rewards) if not self.goal_conditioned else -float(np.sum(np.linalg.norm(
            achieved[1:] - goal, axis=-1)))
        return {"charts/episode_return": ret, "charts/episode_success": float(step.success),
                "charts/episode_final_distance": step.distance}

    def after_episode(self) -> None:
        """Called after each stored episode (RIG/TDM: periodic VAE fine-tuning)."""

    def extra_state(self) -> dict:
        """More to checkpoint (image agents: the fine-tuned VAE and its optimizer)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def sample(self) -> dict[str, torch.Tensor]:
        batch = self.replay.sample(self.agent.cfg.batch_size, self.rng)
        return {k: torch.as_tensor(batch[k], dtype=torch.float32)
                for k in ("obs", "next_obs", "next_achieved", "goal", "action", "reward", "terminated", "tau")
                if k in batch}

    def log_metrics(self, metrics: list[dict]) -> None:
        import mlflow

        keys = set().union(*metrics)
        mean = {k: float(np.mean([m[k] for m in metrics if k in m])) for k in keys}
        mean.update(self.episode_stats)
        now = time.monotonic()
        last_time, last_steps = self.last_log
        if last_steps:  # the first interval would count the time before a resume
            mean["charts/steps_per_second"] = (self.env_steps - last_steps) / max(now - last_time, 1e-9)
        self.last_log = (now, self.env_steps)
        mean["charts/replay_transitions"] = self.replay.transitions
        mean["charts/exploration_noise"] = self.agent.noise.scale(self.env_steps)
        mlflow.log_metrics(mean, step=self.env_steps)

    def evaluate(self) -> None:
        import mlflow

        s = summary(evaluate_policy(self.eval_env, self.policy, self.cfg["eval_episodes"],
                                    self.params["evaluate"]["eval_seed"]))
        row = {"env_steps": self.env_steps, "eval_success_rate": s["success_rate"],
               "eval_final_distance": s["final_distance"], "eval_return": s["return"],
               "eval_latent_distance": s.get("latent_distance", ""),
               "wall_clock_s": round(time.monotonic() - self.start_wall, 3)}
        self.curve.append(row)
        self.write_curve()
        # True and latent distance side by side: a reward-hacking agent shows latent distance
        # falling while the true distance rises (the report's Figure 10, live).
        mlflow.log_metrics({f"eval/{k}": v for k, v in s.items()}, step=self.env_steps)
        self.bar.set_postfix(success=f"{s['success_rate']:.2f}", refresh=False)

    # --- files -----------------------------------------------------------------------------
    def write_curve(self) -> None:
        with atomic_output(self.out_dir / "curve.csv") as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CURVE_COLUMNS)
            writer.writeheader()
            writer.writerows(self.curve)

    def policy_file(self) -> dict:
        """What policy.pt holds: the actor's weights and what it takes to rebuild and run it."""
        td3 = self.agent.cfg
        meta = {"env": self.env_name, "method": self.method, "seed": self.seed, "env_steps": self.env_steps,
                "input_dim": self.agent.actor.net[0].in_features, "action_dim": self.env.action_space.shape[0],
                "hidden": list(td3.hidden), "normalize_inputs": td3.normalize_inputs,
                "goal_conditioned": self.goal_conditioned}
        return {"weights": self.agent.actor.state_dict(), "meta": meta}

    def save_policy(self) -> None:
        with atomic_output(self.out_dir / "policy.pt") as tmp:
            torch.save(self.policy_file(), tmp)

    def _env_rngs(self) -> list[np.random.Generator]:
        return [self.env.rng, self.env.unwrapped.np_random]

    def save_checkpoint(self) -> None:
        state = {
            "agent": self.agent.state_dict(), "replay": self.replay.state_dict(),
            "env_steps": self.env_steps, "episodes": self.episodes, "curve": self.curve,
            "next_eval": self.next_eval, "next_checkpoint": self.next_checkpoint, "run_id": self.run_id,
            "wall_clock": time.monotonic() - self.start_wall,
            "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "env_rngs": [g.bit_generator.state for g in self._env_rngs()],
            "fingerprint": self.fingerprint(),
            **self.extra_state(),
        }
        with atomic_output(self.out_dir / "checkpoint.pt") as tmp:
            torch.save(state, tmp)
        log.debug("checkpoint at env step %d", self.env_steps)

    def fingerprint(self) -> str:
        """What a checkpoint must match to be resumed: env, method, seed and every parameter but
        train.total_steps, so that a finished run can be extended and a changed one is not resumed."""
        import hashlib
        import json

        flat = {k: v for k, v in self.params.flat().items() if k != "train.total_steps" and not k.startswith("profiles.")}
        key = json.dumps([self.env_name, self.method, self.seed, flat], sort_keys=True, default=str)
        return hashlib.sha256(key.encode()).hexdigest()

    def load_checkpoint(self) -> bool:
        path = self.out_dir / "checkpoint.pt"
        if not path.is_file():
            return False
        state = torch.load(path, map_location="cpu", weights_only=False)  # our own file: numpy arrays inside
        if state.get("fingerprint") != self.fingerprint():
            log.warning("%s was written with other parameters: starting afresh (it will be overwritten)", path)
            return False
        self.agent.load_state_dict(state["agent"])
        self.replay.load_state_dict(state["replay"])
        for name in ("env_steps", "episodes", "curve", "next_eval", "next_checkpoint", "run_id", "wall_clock"):
            setattr(self, name, state[name])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        for generator, saved in zip(self._env_rngs(), state["env_rngs"]):
            generator.bit_generator.state = saved
        self.load_extra_state(state)
        self.needs_reset = True  # checkpoints are taken between episodes
        return True

    def close(self) -> None:
        self.env.close()
        self.eval_env.close()
