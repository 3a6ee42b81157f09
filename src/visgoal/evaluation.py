"""The evaluation protocol, shared by every method.

Each environment has a fixed, seeded set of (initial state, goal) pairs: episode i
starts from `env.reset(seed=episode_seed(eval_seed, i))`, so every method and every
seed meets the same goals. Policies act deterministically (no exploration noise).
One CSV row per (seed, episode); a JSON summary beside it (per seed, and mean and std
over seeds: what `dvc metrics show` reads); a picture per method (first frame, final
frame, goal image) for a few episodes; the summary goes to the training run in MLflow.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from visgoal.agents.tdm import argmax_action, eval_horizon
from visgoal.files import atomic_output

log = logging.getLogger("visgoal")

COLUMNS = ("env", "method", "seed", "episode", "final_distance", "success", "min_distance", "latent_distance",
           "return", "steps")


def episode_seed(eval_seed: int, episode: int) -> int:
    """The reset seed of evaluation episode `episode`: disjoint blocks per eval_seed."""
    return eval_seed * 100003 + episode


class StatePolicy:
    """A deterministic state-based policy: (proprio state, desired goal) -> env action.

    `goal_conditioned=False` (the td3 baseline on inverted_pendulum) ignores the goal.
    """

    needs_images = False

    def __init__(self, actor: torch.nn.Module, goal_conditioned: bool):
        self.actor, self.goal_conditioned = actor, goal_conditioned

    def reset(self, seed: int) -> None:
        """Start an episode (a state policy keeps nothing between steps)."""

    def latent_distance(self, step) -> str:
        return ""  # no latent space

    def goal(self, step) -> np.ndarray:
        return step.desired_goal if self.goal_conditioned else np.zeros(0, np.float32)

    def reward(self, step) -> float:
        """What the agent is trained on: -distance to the goal, or the env's own reward."""
        return -step.distance if self.goal_conditioned else step.reward

    @torch.no_grad()
    def __call__(self, step) -> np.ndarray:
        x = torch.as_tensor(np.concatenate([step.state, self.goal(step)]), dtype=torch.float32)[None]
        return self.actor.to_env(self.actor(x))[0].numpy()

    @classmethod
    def load(cls, path: str | Path) -> "StatePolicy":
        from visgoal.agents.networks import Actor

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no policy; train it first (python -m visgoal train ...)")
        saved = torch.load(path, map_location="cpu", weights_only=True)
        meta = saved["meta"]
        actor = Actor(meta["input_dim"], meta["action_dim"], meta["hidden"], np.zeros(meta["action_dim"]),
                      np.zeros(meta["action_dim"]), meta["normalize_inputs"])
        actor.load_state_dict(saved["weights"])
        actor.eval()
        policy = cls(actor, meta["goal_conditioned"])
        policy.meta = meta
        return policy


def latent_observation(z, last_z):
    """[z, z - last_z] along the last axis: the latent and its change since the last step (zero at an
    episode's start, last_z None). Numpy arrays or tensors, one step or many."""
    lib = torch if isinstance(z, torch.Tensor) else np
    return lib.concatenate([z, z - (z if last_z is None else last_z)], -1)


class LatentPolicy:
    """A deterministic image policy (rig, tdm): encode the observation and the goal image with
    the VAE and act on latents. TDM also gets the horizon (`tdm.eval_tau`: fixed, or the rollouts'
    countdown), and may pick actions by argmax of Q over sampled candidates."""

    needs_images = True

    def __init__(self, vae, actor: torch.nn.Module, tdm=None, critic: torch.nn.Module | None = None,
                 velocity: bool = False):
        self.vae, self.actor, self.tdm, self.critic, self.velocity = vae, actor, tdm, critic, velocity
        self.generator = torch.Generator()
        self.reset(0)

    def reset(self, seed: int) -> None:
        self.t, self.goal_z, self.last_z = 0, None, None
        self.generator.manual_seed(seed)  # argmax candidates: the same for the same episode

    def encode(self, image: np.ndarray) -> torch.Tensor:
        return self.vae.encode(torch.from_numpy(np.ascontiguousarray(image))[None])[0]

    def goal(self, step) -> np.ndarray:
        if self.goal_z is None:
            self.goal_z = self.encode(step.goal_image)
        return self.goal_z.numpy()

    def reward(self, step) -> float:
        """Evaluation scores the true distance, whatever the agent was trained on."""
        return -step.distance

    def latent_distance(self, step) -> float:
        return float(torch.linalg.vector_norm(self.encode(step.image) - torch.from_numpy(self.goal(step))))

    @torch.no_grad()
    def __call__(self, step) -> np.ndarray:
        goal = torch.from_numpy(self.goal(step))
        z = self.encode(step.image)
        parts = [latent_observation(z, self.last_z) if self.velocity else z, goal]
        self.last_z = z
        if self.tdm is not None:
            parts.append(torch.tensor([eval_horizon(self.t, self.tdm) / max(self.tdm.tau_max, 1)]))
        x = torch.cat(parts)[None]
        self.t += 1
        if self.tdm is not None and self.tdm.action_selection == "argmax":
            action = argmax_action(self.actor, self.critic, x, goal[None], self.tdm, self.generator)
        else:
            action = self.actor(x)
        return self.actor.to_env(action)[0].numpy()

    @classmethod
    def load(cls, path: str | Path, vae_path: str | Path | None = None) -> "LatentPolicy":
        """policy.pt of an image agent and its VAE (default: the run's own, fine-tuned vae.pt)."""
        from visgoal.agents.networks import Actor, Critic
        from visgoal.agents.tdm import TDMConfig
        from visgoal.vae import load_vae

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no policy; train it first (python -m visgoal train ...)")
        saved = torch.load(path, map_location="cpu", weights_only=True)
        meta = saved["meta"]
        vae = load_vae(vae_path or path.with_name("vae.pt"))
        zeros = np.zeros(meta["action_dim"])
        actor = Actor(meta["input_dim"], meta["action_dim"], meta["hidden"], zeros, zeros, meta["normalize_inputs"])
        actor.load_state_dict(saved["weights"])
        actor.eval()
        tdm = critic = None
        if meta["method"] == "tdm":
            tdm = TDMConfig(**meta["tdm"])
            if "critic" in saved:
                critic = Critic(meta["input_dim"], meta["action_dim"], meta["hidden"], out_dim=vae.latent_dim)
                critic.load_state_dict(saved["critic"])
                critic.eval()
        policy = cls(vae, actor, tdm, critic, velocity=meta.get("latent_velocity", False))
        policy.meta = meta
        return policy


def load_policy(run_dir: Path, method: str, vae=None):
    if method == "td3":
        return StatePolicy.load(run_dir / "policy.pt")
    return LatentPolicy.load(run_dir / "policy.pt", vae)


def run_episode(env, policy, seed: int, frames: bool = False) -> dict:
    """One deterministic episode from the fixed reset `seed`. With frames, the env must render images."""
    step = env.reset(seed=seed)
    policy.reset(seed)
    first = step.image if frames else None
    total, steps, min_distance = 0.0, 0, step.distance
    while not (step.terminated or step.truncated):
        step = env.step(policy(step))
        total += policy.reward(step)
        steps += 1
        min_distance = min(min_distance, step.distance)
    result = {"final_distance": step.distance, "success": bool(step.success), "min_distance": min_distance,
              "latent_distance": policy.latent_distance(step), "return": total, "steps": steps}
    if frames:
        result["frames"] = [first, step.image, step.goal_image]
    return result


def evaluate_policy(env, policy, episodes: int, eval_seed: int) -> list[dict]:
    return [run_episode(env, policy, episode_seed(eval_seed, i)) for i in range(episodes)]


def summary(results: list[dict]) -> dict[str, float]:
    """Means over episodes; latent_distance only for image policies."""
    out = {"success_rate": float(np.mean([r["success"] for r in results])),
           "final_distance": float(np.mean([r["final_distance"] for r in results])),
           "return": float(np.mean([r["return"] for r in results]))}
    latent = [r["latent_distance"] for r in results if r["latent_distance"] != ""]
    if latent:
        out["latent_distance"] = float(np.mean(latent))
    return out


def evaluate(env: str, method: str, out_csv, params, seeds=None, eval_seed=None, runs=None, vae=None,
             progress: bool = True) -> Path:
    from tqdm import tqdm

    from visgoal.envs import make_env
    from visgoal.figures import image_grid, save_png

    torch.set_num_threads(1)
    cfg = params["evaluate"]
    seeds = list(seeds or params["seeds"])
    eval_seed = cfg["eval_seed"] if eval_seed is None else eval_seed
    runs = Path(runs) if runs else Path("results") / env / method
    out_csv = Path(out_csv)
    policies = {seed: load_policy(runs / f"seed{seed}", method, vae) for seed in seeds}
    needs_images = any(p.needs_images for p in policies.values())

    rows, pictures = [], []
    image_size = params["render"]["image_size"]
    with make_env(env, image_size=image_size, render_images=needs_images or cfg["picture_episodes"] > 0) as e:
        bar = tqdm(total=len(seeds) * cfg["episodes"], desc=f"evaluate {env}/{method}", disable=not progress)
        for seed, policy in policies.items():
            for i in range(cfg["episodes"]):
                frames = seed == seeds[0] and i < cfg["picture_episodes"]
                e.render_images = frames or needs_images  # the sim is unaffected by rendering
                result = run_episode(e, policy, episode_seed(eval_seed, i), frames=frames)
                if frames:
                    pictures.append(result.pop("frames"))
                rows.append({"env": env, "method": method, "seed": seed, "episode": i, **result})
                bar.update()
        bar.close()

    with atomic_output(out_csv) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    per_seed = {seed: summary([r for r in rows if r["seed"] == seed]) for seed in seeds}
    write_summary(out_csv.with_suffix(".json"), env, method, cfg["episodes"], per_seed)
    picture = None
    if pictures:
        picture = save_png(image_grid(pictures), out_csv.with_name(f"{method}_eval.png"), scale=2)
    for seed, s in per_seed.items():
        log.info("%s/%s seed %d: success %.3f, final distance %.4f over %d episodes",
                 env, method, seed, s["success_rate"], s["final_distance"], cfg["episodes"])
    _log_to_mlflow(env, method, params, per_seed, policies, picture, out_csv)
    return out_csv


def write_summary(path: Path, env: str, method: str, episodes: int, per_seed: dict[int, dict]) -> Path:
    """The eval summary as JSON: each seed's means over episodes, then mean and std over seeds."""
    keys = next(iter(per_seed.values())).keys()
    over_seeds = {k: np.array([s[k] for s in per_seed.values()]) for k in keys}
    data = {"env": env, "method": method, "episodes": episodes, "seeds": {str(k): v for k, v in per_seed.items()},
            "mean": {k: float(v.mean()) for k, v in over_seeds.items()},
            "std": {k: float(v.std()) for k, v in over_seeds.items()}}
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def _log_to_mlflow(env, method, params, per_seed, policies, picture, out_csv) -> None:
    """Log each seed's summary to its training run (found by tags), else to a new run."""
    import mlflow

    from visgoal.tracking import base_tags, experiment_name, init_store, run_name

    uri = init_store()
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(experiment_name(env))
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(experiment_name(env))
    for seed, s in per_seed.items():
        found = client.search_runs([experiment_id], filter_string=(
            f"tags.method = '{method}' and tags.seed = '{seed}' and attributes.run_name = '{run_name(method, seed)}'"),
            order_by=["attributes.start_time DESC"], max_results=1)
        if found:
            run_id = found[0].info.run_id
        else:
            run_id = client.create_run(experiment_id, run_name=run_name(method, seed),
                                       tags=base_tags(env, method, params.profile, seed)).info.run_id
        step, now = int(policies[seed].meta.get("env_steps", 0)), int(time.time() * 1000)
        client.log_batch(run_id, metrics=[mlflow.entities.Metric(f"final_eval/{k}", v, now, step)
                                          for k, v in s.items()])
        client.log_artifact(run_id, str(out_csv), artifact_path="evaluation")
        if picture is not None and seed == next(iter(per_seed)):
            client.log_artifact(run_id, str(picture), artifact_path="evaluation")
        if not found:
            client.set_terminated(run_id)
