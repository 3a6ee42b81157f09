"""The Workspace: the one training loop, for every method. It owns the environments, the
observation view, the replay buffer, the agent, the MLflow run and the snapshots; the agent
knows nothing about files (DrQ-v2's Workspace).

    view    = StateView | LatentView | PixelView (agents/views.py), from the method's `view_kind`
    agent   = agents.AGENTS[method].build(params, view, ...)
    policy  = agent.policy(training=True): acting, the same code evaluation uses, plus
              `agent.explore`'s noise

`train()` is what `python -m visgoal train` calls. A run writes into its out_dir:
  checkpoint.pt  - everything needed to continue (weights, optimizers, replay, counters,
                   numpy/torch/env RNG states); written atomically every
                   `train.checkpoint_every` env steps, at an episode boundary
  curve.csv      - env_steps, eval_success_rate, eval_final_distance, eval_return, eval_latent_distance,
                   wall_clock_s
  policy.pt      - the final actor: {"weights": state_dict, "meta": {...}}, loadable with
                   torch.load(weights_only=True); `agents.load_policy` rebuilds it
  vae.pt         - image agents: the VAE the policy acts through (fine-tuned or not)
A run killed at any moment and started again with the same command continues from
its last checkpoint, in the same MLflow run.

With `speed.update_thread` a step's gradient updates run on a second thread while the env
steps, renders and encodes on this one: the replay holds finished episodes only, so an update
never reads the step being taken, and the next action waits for it. The two share no state and
draw from the RNGs in the same order, so the weights are the same, byte for byte.
"""

from __future__ import annotations

import copy
import csv
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from visgoal import paths
from visgoal.agents import POLICY_FORMAT, agent_class
from visgoal.agents.demonstrations import DemoReplay
from visgoal.agents.replay import EpisodeReplay
from visgoal.agents.views import make_view
from visgoal.device import resolve
from visgoal.evaluation import evaluate_policy, summary
from visgoal.files import atomic_output, load_weights

log = logging.getLogger("visgoal")

CURVE_COLUMNS = ("env_steps", "eval_success_rate", "eval_final_distance", "eval_return", "eval_latent_distance",
                 "wall_clock_s")


def set_seed_everywhere(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


class Workspace:
    def __init__(self, env_name: str, method: str, seed: int, out_dir: Path, params, vae: Path | None = None,
                 dataset: Path | None = None, progress: bool = True, demos: Path | None = None):
        """`vae` and `dataset` (image agents: the VAE and its dataset, for fine-tuning) default to the
        env's results/<env>/vae.pt and vae_dataset.h5; `demos` (read where `demo_learning.enabled`)
        to its results/<env>/demos.h5."""
        torch.set_num_threads(1)  # small networks: threads only contend on a shared machine
        self.env_name, self.method, self.seed, self.out_dir, self.params = env_name, method, seed, Path(out_dir), params
        self.device = resolve(params["device"])  # the networks', the batches', and what the run records
        self.vae_path = Path(vae) if vae else paths.vae(env_name, paths.root(params.profile))
        self.dataset_path = Path(dataset) if dataset else paths.dataset(env_name, paths.root(params.profile))
        self.demos_path = Path(demos) if demos else paths.demos(env_name, paths.root(params.profile))
        self.cfg, self.progress = params["train"], progress
        self.rng = set_seed_everywhere(seed)
        self.first = self.build(agent_class(method))  # the seeded reset: the first episode starts from it
        self.inputs = self.fingerprint()  # hashed once: the run's inputs do not change under it
        self.needs_reset = False
        self.env_steps, self.episodes, self.wall_clock = 0, 0, 0.0
        self.next_eval, self.next_checkpoint = self.cfg["eval_every"], self.cfg["checkpoint_every"]
        self.curve: list[dict] = []
        self.episode_stats: dict[str, float] = {}  # the latest finished episode, logged with the losses
        self.run_id: str | None = None
        self.updater = ThreadPoolExecutor(1, thread_name_prefix="updates") if self.params["speed"]["update_thread"] else None

    def build(self, agent_cls):
        """Make the view, env, eval_env, agent, replay and policies; return the first (seeded) reset."""
        from visgoal.envs import make_env

        params = self.params
        kind = agent_cls.view_kind(params)  # state, latent or pixels
        image_size = params["render"]["image_size"]
        self.env = make_env(self.env_name, image_size=image_size, render_images=kind != "state")
        self.eval_env = make_env(self.env_name, image_size=image_size, render_images=kind != "state")
        first = self.env.reset(seed=self.seed)
        # The view before the agent: a VAE's building draws from torch's seeded generator before the agent's networks do.
        self.view = view = make_view(kind, params, first, agent_cls.pursues_goal(params, self.env_name), self.vae_path,
                                     self.dataset_path, self.seed)
        low, high = self.env.action_space.low, self.env.action_space.high
        self.agent = agent_cls.build(params, view, low, high, self.rng)
        self.replay = EpisodeReplay(params["replay"]["capacity"], self.env.spec.episode_length, view.obs_shape,
                                    view.goal_dim, len(low), obs_dtype=view.dtype, achieved_is_obs=view.achieved_is_obs,
                                    image_shape=first.image.shape if view.keeps_frames else None,
                                    reads=self.agent.batch_keys, **self.agent.replay_options(params, view))
        self.policy, self.eval_policy = self.agent.policy(training=True), self.agent.policy(training=False)
        self.terminal_for_goals = not view.goal_conditioned or self.env.spec.termination == "absorbing"
        self.demo_replay, self.demo_rows = None, 0
        learning = params["demo_learning"]
        if self.reads_demos:  # an offline method's data, or demonstrations in every batch (agents/demonstrations.py)
            from visgoal.data.demos import read_demos

            demos = read_demos(self.demos_path, state=kind == "state")
            self.demo_replay = DemoReplay(demos, view, self.agent.replay_options(params, view), self.agent.batch_keys,
                                          self.terminal_for_goals, low, high)
            self.demo_rows = (self.agent.batch_size if self.offline else
                              round(learning["batch_share"] * self.agent.batch_size))
            self.agent.bc_weight, self.agent.q_filter = learning["bc_weight"], learning["q_filter"]
        return first

    @property
    def offline(self) -> bool:
        """Whether the method learns from demonstrations alone (gcbc): its clock is its updates."""
        return self.agent.offline

    @property
    def reads_demos(self) -> bool:
        return self.agent.reads_demos(self.params)

    # --- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        import mlflow
        from tqdm import tqdm

        from visgoal import tracking

        resumed = self.load_checkpoint()
        with tracking.run(self.env_name, self.method, self.params.profile, self.seed, run_id=self.run_id,
                          params={**self.params.flat(), "device": self.device,  # the device it resolved to
                                  **({"demo_steps": self.demo_replay.steps} if self.demo_replay else {})},
                          inputs=self.input_files()) as self.run_id:
            mlflow.set_tag("view", self.view.kind)  # what it saw: crl's two representations share a run name
            mlflow.set_tag("device", self.device)  # this session's (a resumed run may have moved)
            if self.env.render_images:  # its pictures' renderer, once per run (the GL context exists by now)
                from visgoal.envs.render import gl_context
                from visgoal.gl import log_renderer

                gl_context()
                mlflow.set_tag("gl_renderer", log_renderer(self.device) or "unknown")
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
                    self.run_updates(total) if self.offline else self.run_episode(total)
                    if self.env_steps >= self.next_eval or self.env_steps >= total:
                        self.evaluate()
                        self.next_eval = (self.env_steps // self.cfg["eval_every"] + 1) * self.cfg["eval_every"]
                    if self.env_steps >= self.next_checkpoint or self.env_steps >= total:
                        # advanced first, so that a resumed run does not save again after its first episode
                        self.next_checkpoint = (self.env_steps // self.cfg["checkpoint_every"] + 1) * \
                            self.cfg["checkpoint_every"]
                        self.save_checkpoint()
                if not self.curve or self.curve[-1]["env_steps"] != self.env_steps:
                    self.evaluate()
                self.write_curve()  # also when a finished run is started again (its outputs were removed)
                self.save_policy()
                for name in (paths.POLICY, paths.CURVE, paths.RUN_VAE):  # what it made, beside its metrics
                    if (self.out_dir / name).is_file():
                        mlflow.log_artifact(str(self.out_dir / name))
            finally:
                self.bar.close()
            # Per CPU-second too: on a shared machine wall-clock speed says more about the neighbours.
            steps = self.env_steps - start_steps
            sps = steps / max(time.monotonic() - started, 1e-9)
            cpu_sps = steps / max(time.process_time() - cpu_started, 1e-9)
            mlflow.log_metrics({"charts/run_steps_per_second": sps, "charts/run_steps_per_cpu_second": cpu_sps},
                               step=self.env_steps)
            log.info("trained %s/%s seed %d: %d env steps (this session: %.0f steps/s, %.0f per CPU-second, "
                     "evaluations included), eval success %.3f -> %s", self.env_name, self.method, self.seed,
                     self.env_steps, sps, cpu_sps, self.curve[-1]["eval_success_rate"], self.out_dir)

    def run_episode(self, total: int) -> None:
        """Act for one episode (random actions before learning_starts), updating every step after it."""
        step = self.env.reset() if self.needs_reset else self.first
        self.needs_reset = True
        self.agent.start_episode()
        self.view.reset()
        self.policy.reset()
        goal = self.agent.exploration_goal(self.view, step, self.rng)
        first_obs, first_achieved = self.view.observe(step)
        obs, achieved, actions, rewards, terminated = [first_obs], [first_achieved], [], [], []
        images = [step.image] if self.replay.images is not None else None
        metrics: list[dict] = []
        while not (step.terminated or step.truncated) and self.env_steps < total:
            if self.env_steps < self.cfg["learning_starts"]:
                action = self.rng.uniform(-1.0, 1.0, self.env.action_space.shape)
                self.policy.skip()  # the horizon's countdown moves on all the same
            else:
                action = self.agent.explore(self.policy(obs[-1], goal), self.env_steps)
            updating = (self.agent.batch_keys and self.env_steps + 1 >= self.cfg["learning_starts"] and self.replay.size > 0
                        and (self.env_steps + 1) % self.cfg["update_every"] == 0)
            pending = self.updater.submit(self.updates) if updating and self.updater else None
            step = self.env.step(self.policy.env_action(action))
            next_obs, next_achieved = self.view.observe(step)
            obs.append(next_obs), achieved.append(next_achieved), actions.append(action)
            if images is not None:
                images.append(step.image)
            # An env that stops at its own goal (the kitchen) says nothing about relabelled goals: a
            # cut, like a time limit. A fall (the pendulum's; `termination: absorbing`) is terminal
            # for every goal: the agent stays there (TD3Agent.update_critic values it).
            rewards.append(step.reward), terminated.append(step.terminated and self.terminal_for_goals)
            self.env_steps += 1
            if updating:
                metrics.extend(pending.result() if pending else self.updates())
            if self.env_steps % self.cfg["log_every"] == 0 and metrics:
                self.log_metrics(metrics)
                metrics = []
        self.replay.add_episode(np.array(obs), np.array(achieved), goal, np.array(actions), np.array(rewards),
                                np.array(terminated, dtype=np.float32), images=None if images is None else np.array(images))
        self.episodes += 1
        self.bar.update(len(actions))
        self.episode_stats = self.episode_metrics(np.array(achieved), goal, rewards, step)
        learning = self.env_steps >= self.cfg["learning_starts"]
        finetuned = self.agent.after_episode(self.view, self.replay, self.episodes, learning, self.rng)
        if finetuned:
            import mlflow

            if self.demo_replay is not None:
                self.demo_replay.refresh()  # the demonstrations' latents, through the fine-tuned VAE
            mlflow.log_metrics(finetuned, step=self.env_steps)
            log.debug("after episode %d at env step %d: %s", self.episodes, self.env_steps, finetuned)

    def run_updates(self, total: int) -> None:
        """An offline method's updates up to its next evaluation or checkpoint; each counts as a step."""
        start, stop = self.env_steps, min(self.next_eval, self.next_checkpoint, total)
        metrics: list[dict] = []
        while self.env_steps < stop:
            metrics.append(self.agent.update(self.sample()))
            self.env_steps += 1
            if self.env_steps % self.cfg["log_every"] == 0:
                self.log_metrics(metrics)
                metrics = []
        self.bar.update(stop - start)

    def episode_metrics(self, achieved: np.ndarray, goal: np.ndarray, rewards: list[float], step) -> dict:
        """The finished training episode: what its view shows of it (a latent return and distance, a
        return), and its true success and distance where its goal was the env's own (not an imagined one)."""
        stats = self.view.episode_stats(achieved, goal, rewards)
        if self.agent.explores_env_goals():
            stats.update({"charts/episode_success": float(step.success), "charts/episode_final_distance": step.distance})
        return stats

    def updates(self) -> list[dict]:
        """One env step's gradient updates, each on a fresh batch."""
        return [self.agent.update(self.sample()) for _ in range(self.cfg["updates_per_step"])]

    def sample(self) -> dict[str, torch.Tensor]:
        """A batch of `batch_keys`; with demonstrations, `demo_learning.batch_share` of its rows are
        theirs (and a `demo` mask tells which)."""
        keys = self.agent.batch_keys
        if self.offline:
            batch = self.demo_replay.replay.sample(self.agent.batch_size, self.rng)
        else:
            batch = self.replay.sample(self.agent.batch_size - self.demo_rows, self.rng)
        if self.demo_replay is not None and not self.offline:
            batch, keys = self.demo_replay.mix(batch, self.demo_rows, self.rng), (*keys, "demo")
        # Images stay uint8 (a quarter of the memory traffic, and of the copy to a GPU); the agent
        # converts what it uses.
        return {k: torch.from_numpy(batch[k]).to(self.device) if batch[k].dtype == np.uint8 else
                torch.as_tensor(batch[k], dtype=torch.float32, device=self.device)
                for k in keys if k in batch}

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
        if hasattr(self.agent, "noise"):
            mean["charts/exploration_noise"] = self.agent.noise.scale(self.env_steps)
        mlflow.log_metrics(mean, step=self.env_steps)
        if not self.progress:  # a pipeline's log file: one line per interval, for `tail -f`
            speed = f"{mean['charts/steps_per_second']:.0f} steps/s" if "charts/steps_per_second" in mean else "starting"
            losses = ", ".join(f"{k.split('/', 1)[1]} loss {v:.4g}" for k, v in sorted(mean.items())
                               if k.startswith("losses/"))
            last = self.curve[-1] if self.curve else None
            evaluated = f"; eval success {last['eval_success_rate']:.2f} at step {last['env_steps']}" if last else ""
            log.info("step %d/%d: %s, %s%s", self.env_steps, self.cfg["total_steps"], speed, losses, evaluated)

    def evaluate(self) -> None:
        import mlflow

        s = summary(evaluate_policy(self.eval_env, self.view, self.eval_policy, self.cfg["eval_episodes"],
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
        if not self.progress:
            log.info("eval at step %d: success %.2f, final distance %.4g over %d episodes", self.env_steps,
                     s["success_rate"], s["final_distance"], self.cfg["eval_episodes"])

    # --- files -----------------------------------------------------------------------------
    def write_curve(self) -> None:
        with atomic_output(self.out_dir / paths.CURVE) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CURVE_COLUMNS)
            writer.writeheader()
            writer.writerows(self.curve)

    def save_policy(self) -> None:
        """policy.pt (the agent's `policy_file` and the run's meta), and the view's model beside it."""
        saved = self.agent.policy_file()
        saved["meta"].update({"format": POLICY_FORMAT, "params": self.made_with(),
                              "env": self.env_name, "method": self.method, "seed": self.seed,
                              "env_steps": self.env_steps, "view": self.view.meta()})
        self.view.save(self.out_dir, self.env_steps)
        with atomic_output(self.out_dir / paths.POLICY) as tmp:
            torch.save(on_cpu(saved), tmp)  # loadable where there is no GPU, with or without map_location

    def _env_rngs(self) -> list[np.random.Generator]:
        return [self.env.rng, self.env.unwrapped.np_random]

    def save_checkpoint(self) -> None:
        state = {
            "agent": self.agent.state_dict(), "replay": self.replay.state_dict(),
            "env_steps": self.env_steps, "episodes": self.episodes, "curve": self.curve,
            "next_eval": self.next_eval, "next_checkpoint": self.next_checkpoint, "run_id": self.run_id,
            "wall_clock": time.monotonic() - self.start_wall,
            "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            **({"cuda_rng": torch.cuda.get_rng_state(self.device)} if self.device.startswith("cuda") else {}),
            "env_rngs": [g.bit_generator.state for g in self._env_rngs()],
            "fingerprint": self.inputs, "view": self.view.state_dict(),
            "params": self.made_with(),  # what made it, so that an option retired later can be named
        }
        with atomic_output(self.out_dir / paths.CHECKPOINT) as tmp:
            torch.save(on_cpu(plain(state)), tmp)
        log.debug("checkpoint at env step %d", self.env_steps)

    def made_with(self) -> dict:
        """The parameters the run learned with, as its files record them: all but `speed` (how fast,
        never what: the same files either way), with the device `device` resolved to (cpu, cuda:0)."""
        made = {section: values for section, values in self.params.as_dict().items() if section != "speed"}
        return {**made, "device": self.device}

    def fingerprint(self) -> dict[str, str]:
        """What a checkpoint must match to be resumed, part by part: the run (env, method, seed), every
        parameter but train.total_steps (so that a finished run can be extended), `speed` (it
        changes no number) and `device` (a run moved to another machine goes on: `load_checkpoint`
        warns), the package version, and the content of every file the run reads:
        envs/<env>.yaml, and for image agents the VAE and, when fine-tuning, its dataset. A changed
        part starts the run afresh."""
        from visgoal.tracking import fingerprint

        flat = {k: v for k, v in self.params.flat().items()
                if k not in ("train.total_steps", "device") and not k.startswith(("speed.", "profiles."))}
        return fingerprint(flat, self.input_files(), run=f"{self.env_name}/{self.method}/seed{self.seed}")

    def input_files(self) -> dict[str, Path]:
        """Every file the run reads: envs/<env>.yaml, and for image agents the VAE and, when
        fine-tuning, its dataset (their hashes are the run's MLflow tags and part of its fingerprint)."""
        from visgoal.config import project_root

        demos = {"demonstrations": self.demos_path} if self.reads_demos else {}
        return {"env spec": project_root() / "envs" / f"{self.env_name}.yaml", **self.view.input_files(), **demos}

    def load_checkpoint(self) -> bool:
        path = self.out_dir / paths.CHECKPOINT
        if not path.is_file():
            return False
        state = load_weights(path, ValueError(f"{path}: not a visgoal checkpoint (unreadable, or holding more than "
                                              f"weights); delete it to train this run afresh"))
        from visgoal.agents import refuse_retired
        from visgoal.tracking import changed

        if isinstance(state, dict) and isinstance(state.get("agent"), dict):
            agent = state["agent"]  # what a retired option left in the weights, and the params that made them
            refuse_retired(path, state.get("params", {}))
            refuse_retired(path, {"td3": {"absorbing": "farthest" if float(agent.get("farthest", 0)) > 0 else "kept"},
                                  "crl": {"absorbing": "sink" if "sink" in agent.get("critic", {}) else "frame"}})
        if differ := changed(state.get("fingerprint") if isinstance(state, dict) else None, self.inputs):
            log.warning("%s does not match this run (changed: %s): starting afresh (it will be overwritten)",
                        path, ", ".join(differ))
            return False
        self.agent.load_state_dict(state["agent"])
        self.replay.load_state_dict(state["replay"])
        for name in ("env_steps", "episodes", "curve", "next_eval", "next_checkpoint", "run_id", "wall_clock"):
            setattr(self, name, state[name])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        made_on = state.get("params", {}).get("device", "cpu")  # a checkpoint older than `device`: the CPU's
        if made_on != self.device:
            log.warning("%s was made on %s, and the run continues on %s: its numbers will not be those of a "
                        "run on one device", path, made_on, self.device)
        elif "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        for generator, saved in zip(self._env_rngs(), state["env_rngs"]):
            generator.bit_generator.state = saved
        self.view.load_state_dict(state["view"])
        if self.demo_replay is not None:
            self.demo_replay.refresh()  # through the checkpoint's VAE
        self.needs_reset = True  # checkpoints are taken between episodes
        return True

    def close(self) -> None:
        if self.updater:
            self.updater.shutdown()
        self.env.close()
        self.eval_env.close()


def plain(obj):
    """A checkpoint's state as `torch.load(weights_only=True)` reads it: numpy arrays become tensors
    (their readers assign them into numpy arrays), numpy scalars Python numbers."""
    if isinstance(obj, dict):
        return {key: plain(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(value) for value in obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def on_cpu(obj):
    """A file's content with every tensor on the CPU, so that a policy or checkpoint made on a GPU
    loads on a machine without one. What is on the CPU already is returned as it is (the same
    objects, so the same bytes); a copied mapping keeps its type and attributes (a state_dict's
    `_metadata`)."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        moved = {key: on_cpu(value) for key, value in obj.items()}
        if all(moved[key] is value for key, value in obj.items()):
            return obj
        out = copy.copy(obj)
        out.update(moved)
        return out
    if isinstance(obj, (list, tuple)):
        moved = [on_cpu(value) for value in obj]
        return obj if all(a is b for a, b in zip(moved, obj)) else type(obj)(moved)
    return obj


def train(env: str, method: str, seed: int, out_dir, params, vae=None, dataset=None, progress: bool = True,
          demos=None) -> Path:
    """Train one agent for one seed into `out_dir` (resuming its checkpoint if there is one)."""
    workspace = Workspace(env, method, seed, Path(out_dir), params, vae, dataset, progress, demos)
    try:
        workspace.run()
    finally:
        workspace.close()
    return Path(out_dir)
