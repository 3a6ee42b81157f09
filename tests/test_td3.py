"""The off-policy core and the state-based TD3 baseline: relabelling, TD3's updates, resume, evaluation.

Training and evaluation go through the real command line (`visgoal.cli.main`) with the
smoke profile, on every environment.
"""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import ENVS, ROOT, demos_args
from visgoal.agents.replay import STRATEGIES, EpisodeReplay, negative_distance
from visgoal.agents.td3 import TD3Agent, TD3Config
from visgoal.envs import load_spec
from visgoal.agents.policy import Policy
from visgoal.agents.views import StateView
from visgoal.envs.core import Step
from visgoal.evaluation import run_episode, run_episodes
from visgoal.cli import main
from visgoal.config import load_params
from visgoal.tracking import experiment_name
from visgoal.agents import load_policy


@pytest.mark.parametrize("env", ENVS)
def test_train_and_evaluate_through_the_cli(env, workdir, smoke_demos):
    run = workdir / env / "td3" / "seed0"
    assert main(["train", "--env", env, "--method", "td3", "--seed", "0", "--profile", "smoke", "--quiet",
                 "--out", str(run), *demos_args(env, smoke_demos)]) == 0
    smoke = load_params(profile="smoke")
    with open(run / "curve.csv") as f:
        curve = list(csv.DictReader(f))
    assert list(curve[0]) == ["env_steps", "eval_success_rate", "eval_final_distance", "eval_return",
                              "eval_latent_distance", "wall_clock_s"]
    assert all(row["eval_latent_distance"] == "" for row in curve)  # no latent space
    assert int(curve[-1]["env_steps"]) == smoke["train"]["total_steps"]
    saved = torch.load(run / "policy.pt", weights_only=True)
    assert saved["meta"]["view"]["goal_conditioned"] == (load_spec(env).oracle_reward == "goal")

    out = workdir / env / "td3_eval.csv"
    assert main(["evaluate", "--env", env, "--method", "td3", "--profile", "smoke", "--quiet",
                 "--runs", str(run.parent), "--out", str(out)]) == 0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(smoke["seeds"]) * smoke["evaluate"]["episodes"]
    assert list(rows[0]) == ["env", "method", "seed", "episode", "final_distance", "success", "reached",
                             "min_distance", "latent_distance", "return", "steps"]
    assert all(r["latent_distance"] == "" and float(r["min_distance"]) <= float(r["final_distance"]) for r in rows)
    assert (out.parent / "td3_eval.png").is_file()
    summary = json.loads(out.with_suffix(".json").read_text())  # what `dvc metrics show` reads
    successes = [r["success"] == "True" for r in rows]
    assert summary["success_rate"] == pytest.approx(np.mean(successes))  # one seed: its mean
    assert summary["final_distance"] == pytest.approx(np.mean([float(r["final_distance"]) for r in rows]))
    assert summary["reached_rate"] == pytest.approx(np.mean([r["reached"] == "True" for r in rows]))
    assert summary["success_rate_std"] is None  # one seed: no spread (summary.csv leaves it empty)
    assert sorted(summary) == ["final_distance", "final_distance_std", "reached_rate", "reached_rate_std",
                               "success_rate", "success_rate_std"]  # DVC's


@pytest.mark.parametrize("distances, success, reached", [
    ([1.0, 0.3, 0.2, 0.8], False, True),   # through the goal and out again: reached, not a success
    ([1.0, 0.8, 0.5, 0.3], True, True),    # reached at the last step
    ([0.3, 0.6, 0.9, 0.7], False, False),  # the start was within the threshold, the policy left it: never reached
])
def test_reached_counts_any_step_after_the_first_action_and_success_only_the_last(distances, success, reached):
    """The protocol's success is the final step's; `reached` is a diagnostic for a policy that passes
    through its goal. A scripted episode of given distances (threshold 0.45) has each."""
    def step(d, last):
        return Step(image=None, goal_image=None, state=np.zeros(2), achieved_goal=np.zeros(2),
                    desired_goal=np.zeros(2), distance=d, success=d < 0.45, reward=-d, truncated=last)

    class Scripted:
        def reset(self, seed):
            self.steps = iter(step(d, i == len(distances) - 1) for i, d in enumerate(distances))
            return next(self.steps)

        def step(self, action):
            return next(self.steps)

    class Still(torch.nn.Module):
        action_scale, action_bias = torch.ones(2), torch.zeros(2)

        def forward(self, x):
            return torch.zeros(len(x), 2)

    result = run_episode(Scripted(), StateView(True, 2, 2), Policy(Still()), seed=0)
    assert (result["success"], result["reached"]) == (success, reached)
    assert result["min_distance"] == min(distances) and result["steps"] == len(distances) - 1
    seen = []  # a diagnostic's watcher sees the reset and every step, and changes nothing
    watched = run_episode(Scripted(), StateView(True, 2, 2), Policy(Still()), seed=0,
                          watch=lambda s, action: seen.append((s.distance, None if action is None else list(action))))
    assert watched == result
    assert seen == [(distances[0], None)] + [(d, [0.0, 0.0]) for d in distances[1:]]


def test_episodes_stepped_together_end_on_their_own_and_match_one_at_a_time():
    """run_episodes steps a batch of envs with one actor call per step for those still running: an
    episode cut by its time limit or ended by a fall leaves the batch, the others go on, and each
    episode's result is the one it has alone."""
    def step(d, last, fall=False):
        return Step(image=None, goal_image=None, state=np.full(2, d), achieved_goal=np.zeros(2),
                    desired_goal=np.zeros(2), distance=d, success=d < 0.45, reward=-d, truncated=last and not fall,
                    terminated=last and fall)

    scripts = {0: ([1.0, 0.8, 0.5, 0.3], False), 1: ([0.9, 0.2], True), 2: ([0.7, 0.6, 0.1], False)}

    class Scripted:
        def reset(self, seed):
            distances, fall = scripts[seed]
            self.steps = iter(step(d, i == len(distances) - 1, fall) for i, d in enumerate(distances))
            return next(self.steps)

        def step(self, action):
            return next(self.steps)

    class Still(torch.nn.Module):
        action_scale, action_bias = torch.ones(2), torch.zeros(2)
        batches: list[int] = []

        def forward(self, x):
            self.batches.append(len(x))
            return torch.zeros(len(x), 2) + x[:, :1]  # each row's own action: its state's distance

    actor = Still()
    seen = []
    together = run_episodes([Scripted(), Scripted(), Scripted()], StateView(True, 2, 2), Policy(actor), [0, 1, 2],
                            watch=lambda k, s, action: seen.append((k, s.distance)))
    assert actor.batches == [3, 2, 1]
    alone = [run_episode(Scripted(), StateView(True, 2, 2), Policy(Still()), seed=seed) for seed in (0, 1, 2)]
    assert together == alone
    assert [r["steps"] for r in together] == [3, 1, 2] and [r["success"] for r in together] == [True, True, True]
    assert sorted(seen) == sorted((k, d) for k, (distances, _) in scripts.items() for d in distances)
    with pytest.raises(ValueError, match="3 episodes need as many envs, got 2"):
        run_episodes([Scripted(), Scripted()], StateView(True, 2, 2), Policy(Still()), [0, 1, 2])


def test_evaluation_is_deterministic_whichever_process_runs_an_episode(workdir):
    """speed.processes deals the protocol's groups of episodes (`evaluate.batch`) out to processes: the
    same files, byte for byte, with the pictured episodes split between them (pictures are made where
    their episode runs)."""
    run = workdir / "fetch_reach" / "td3"
    if not (run / "seed0" / "policy.pt").is_file():
        assert main(["train", "--env", "fetch_reach", "--method", "td3", "--profile", "smoke", "--quiet",
                     "--out", str(run / "seed0")]) == 0
    files = []
    for i, processes in enumerate([1, 1, 2]):
        out = workdir / f"det{i}" / "td3_eval.csv"
        assert main(["evaluate", "--env", "fetch_reach", "--method", "td3", "--profile", "smoke", "--quiet",
                     "--runs", str(run), "--out", str(out), "--set", "evaluate.episodes=5",
                     "--set", "evaluate.picture_episodes=3", "--set", "evaluate.batch=2",
                     "--set", f"speed.processes={processes}"]) == 0
        files.append([out.with_suffix(suffix).read_bytes() for suffix in (".csv", ".json", ".png")])
    assert len(files[0][0].splitlines()) == 1 + 5
    assert files[0] == files[1], "the same run twice"
    assert files[0] == files[2], "one process against two"


# --- replay and relabelling ------------------------------------------------------------------
def filled_replay(relabel, episodes=40, length=10, seed=0) -> EpisodeReplay:
    rng = np.random.default_rng(seed)
    replay = EpisodeReplay(capacity=episodes * length, max_length=length, obs_shape=(4,), goal_dim=3, action_dim=2,
                           relabel=relabel, reward_fn=negative_distance)
    for _ in range(episodes + 5):  # overfill: the ring drops the oldest episodes
        n = int(rng.integers(3, length + 1))
        replay.add_episode(rng.normal(size=(n + 1, 4)), rng.normal(size=(n + 1, 3)), rng.normal(size=3),
                           rng.uniform(-1, 1, (n, 2)), np.zeros(n), np.zeros(n))
    return replay


def test_relabelled_rewards_equal_recomputed_distances():
    replay = filled_replay({"future": 0.4, "episode": 0.2, "buffer": 0.2})
    rng = np.random.default_rng(1)
    batch = replay.sample(4096, rng)
    np.testing.assert_allclose(batch["reward"], -np.linalg.norm(batch["next_achieved"] - batch["goal"], axis=-1),
                               rtol=1e-6)
    # "future" goals are achieved goals strictly after the sampled step, within the episode.
    future = np.flatnonzero(batch["strategy"] == STRATEGIES.index("future"))
    for i in future[:200]:
        t, n = batch["t"][i], batch["length"][i]
        episode = [k for k in range(replay.size) if np.array_equal(replay.obs[k, t], batch["obs"][i])][0]
        later = replay.achieved[episode, t + 1 : n + 1]
        assert np.any(np.all(later == batch["goal"][i], axis=1))
    original = batch["strategy"] == STRATEGIES.index("original")
    assert original.any()


def test_relabelling_mixture_matches_config():
    relabel = load_params(ROOT / "params.yaml", "default")["replay"]["relabel"]
    for weights in (relabel, {"future": 0.5, "episode": 0.2, "buffer": 0.1}):
        replay = filled_replay(weights)
        strategy = replay.sample(20000, np.random.default_rng(2))["strategy"]
        for name in STRATEGIES[1:]:
            assert np.mean(strategy == STRATEGIES.index(name)) == pytest.approx(weights.get(name, 0.0), abs=0.015)
        assert np.mean(strategy == 0) == pytest.approx(1 - sum(weights.values()), abs=0.015)


def test_prior_relabelling_needs_a_sampler():
    with pytest.raises(ValueError, match="goal_sampler"):
        filled_replay({"prior": 0.3})
    replay = EpisodeReplay(100, 10, (4,), 3, 2, {"prior": 1.0}, negative_distance,
                           goal_sampler=lambda n, rng: np.full((n, 3), 7.0))
    replay.add_episode(np.zeros((5, 4)), np.zeros((5, 3)), np.zeros(3), np.zeros((4, 2)), np.zeros(4), np.zeros(4))
    assert (replay.sample(16, np.random.default_rng(0))["goal"] == 7.0).all()


# --- TD3 -------------------------------------------------------------------------------------
def test_target_networks_move_by_polyak_averaging():
    torch.manual_seed(0)
    cfg = TD3Config(hidden=[16, 16], polyak=0.1, policy_delay=2, batch_size=32)
    agent = TD3Agent(7, 2, [-1, -1], [1, 1], cfg, np.random.default_rng(0))
    batch = {"obs": torch.randn(32, 4), "goal": torch.randn(32, 3), "next_obs": torch.randn(32, 4),
             "action": torch.rand(32, 2) * 2 - 1, "reward": torch.randn(32), "terminated": torch.zeros(32)}
    before = {n: [p.clone() for p in getattr(agent, n).parameters()] for n in ("actor_target", "critic_target")}
    agent.update(batch)  # a critic step only: targets wait for the delayed update
    for name in before:
        assert all(torch.equal(a, b) for a, b in zip(before[name], getattr(agent, name).parameters()))
    metrics = agent.update(batch)
    assert {"losses/critic", "losses/actor", "values/q1"} <= set(metrics)
    for name, online in (("actor_target", agent.actor), ("critic_target", agent.critic)):
        for old, new, p in zip(before[name], getattr(agent, name).parameters(), online.parameters()):
            torch.testing.assert_close(new, 0.9 * old + 0.1 * p)
        assert not all(torch.equal(a, b) for a, b in zip(before[name], getattr(agent, name).parameters()))


def test_terminal_steps_do_not_bootstrap():
    cfg = TD3Config(hidden=[8], gamma=0.9)
    agent = TD3Agent(3, 1, [-1], [1], cfg, np.random.default_rng(0))
    x = torch.randn(5, 3)
    reward = torch.arange(5.0)
    metrics = agent.update_critic(x, torch.zeros(5, 1), reward, x, torch.ones(5))
    assert metrics["values/target_q"] == pytest.approx(reward.mean().item())


def test_a_terminal_state_keeps_its_goal_distance_forever():
    """With -distance rewards a terminal state is absorbing: its target is -d / (1 - gamma),
    worth less than any bootstrapped path that keeps going at a smaller distance."""
    cfg = TD3Config(hidden=[8], gamma=0.9)
    agent = TD3Agent(3, 1, [-1], [1], cfg, np.random.default_rng(0), terminal_keeps_reward=True)
    x, distance = torch.randn(6, 3), torch.tensor([0.0, 0.5, 1.0, 0.5, 1.0, 2.0])
    terminated = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    with torch.no_grad():  # what the bootstrapped rows must get
        action = agent.actor_target.from_normalized(x)
    agent.cfg.target_noise = 0.0
    with torch.no_grad():
        future = torch.min(*agent.critic_target(x, action)).squeeze(-1)
    metrics = agent.update_critic(x, torch.zeros(6, 1), -distance, x, terminated)
    expected = torch.cat([-distance[:3] / (1 - 0.9), -distance[3:] + 0.9 * future[3:]])
    assert metrics["values/target_q"] == pytest.approx(expected.mean().item(), rel=1e-5)
    # A state-based agent told to reach a goal gets the same (`build` passes view.goal_conditioned).
    assert TD3Agent.build(load_params(profile="smoke"), StateView(True, 3, 2), np.array([-1.0]), np.array([1.0]),
                          np.random.default_rng(0)).terminal_keeps_reward



def test_tdm_values_a_fall_per_dimension():
    """TDM's fallen rows: the reached distance at every horizon (the state stays where it fell);
    live rows bootstrap, or take what they reached at tau = 0."""
    from visgoal.agents.tdm import TDMAgent, TDMConfig

    goal = torch.zeros(3, 2)
    next_z = torch.tensor([[0.1, 0.2], [2.0, 0.1], [0.3, 1.5]])
    tau, terminated = torch.tensor([3, 0, 3]), torch.tensor([1.0, 0.0, 0.0])
    torch.manual_seed(0)
    agent = TDMAgent(2, 1, [-1], [1], TD3Config(hidden=[8], target_noise=0.0), TDMConfig(tau_max=3),
                     np.random.default_rng(0))
    next_x = torch.cat([next_z, goal, torch.full((3, 1), 2 / 3)], dim=-1)
    targets = agent.targets(goal, next_x, next_z, tau, terminated)
    np.testing.assert_allclose(targets[0], [-0.1, -0.2], rtol=1e-6)  # fallen at tau 3: what it reached
    np.testing.assert_allclose(targets[1], [-2.0, -0.1], rtol=1e-6)  # tau = 0: what it reached
    with torch.no_grad():
        f1, f2 = agent.critic_target(next_x[2:], agent.actor_target.from_normalized(next_x[2:]))
    np.testing.assert_allclose(targets[2], torch.min(-f1.abs(), -f2.abs())[0], rtol=1e-6)  # bootstrapped


def averaging_agent(method: str, average: float):
    """A small agent of `method` with an averaged actor at rate `average`, and a batch for it."""
    from visgoal.agents.crl import CRLAgent, CRLConfig
    from visgoal.agents.tdm import TDMAgent, TDMConfig

    torch.manual_seed(0)
    rng, low, high = np.random.default_rng(0), -np.ones(2), np.ones(2)
    cfg = TD3Config(hidden=[32, 32], batch_size=32, policy_delay=2, actor_average=average)
    if method == "crl":  # its own key, crl.actor_average
        return CRLAgent(4, 3, 2, low, high, TD3Config(hidden=[32, 32], batch_size=32),
                        CRLConfig(repr_dim=8, hidden=(32, 32), actor_average=average), rng)
    if method == "tdm":
        return TDMAgent(3, 2, low, high, cfg, TDMConfig(tau_max=3), rng, obs_dim=4)
    return TD3Agent(7, 2, low, high, cfg, rng, terminal_keeps_reward=True)


@pytest.mark.parametrize("method", ["td3", "tdm", "crl"])
def test_the_averaged_actor_acts_in_evaluations_and_changes_nothing_that_is_learned(method):
    """`actor_average` (td3's section, which rig and tdm read through image_agents.td3; crl's own): a
    Polyak average of the actor, a step of the setting toward it after each actor step (every
    `policy_delay` updates for TD3 and TDM), is what evaluations and policy.pt act with. Rollouts
    keep the actor, the actor learns the same weights with it or without it, and a checkpoint carries it."""
    plain, averaged = averaging_agent(method, 0.0), averaging_agent(method, 0.1)
    assert "averaged_actor" in averaged.nets() and "averaged_actor" not in plain.nets()
    expected = {k: v.clone() for k, v in averaged.actor.state_dict().items()}
    generator, steps = torch.Generator().manual_seed(0), 0
    for i in range(20):
        batch = {"obs": torch.randn(32, 4, generator=generator), "goal": torch.randn(32, 3, generator=generator),
                 "action": torch.rand(32, 2, generator=generator) * 2 - 1, "reward": -torch.rand(32, generator=generator),
                 "next_obs": torch.randn(32, 4, generator=generator), "terminated": torch.zeros(32),
                 "next_achieved": torch.randn(32, 3, generator=generator), "tau": torch.randint(0, 4, (32,), generator=generator)}
        before = [p.clone() for p in averaged.actor.parameters()]
        for agent in (plain, averaged):  # the same target-policy noise for both
            torch.manual_seed(i)
            agent.update(batch)
        if any(not torch.equal(a, b) for a, b in zip(before, averaged.actor.parameters())):  # an actor step
            steps += 1
            for name, value in averaged.actor.named_parameters():
                expected[name] = 0.9 * expected[name] + 0.1 * value.detach()
    assert steps == (20 if method == "crl" else 10)  # TD3's delayed actor: every second update
    for name, value in plain.actor.state_dict().items():
        assert torch.equal(value, averaged.actor.state_dict()[name]), name
    for name, value in averaged.averaged_actor.state_dict().items():  # the normalizer's statistics: the actor's
        torch.testing.assert_close(value, expected[name] if "normalizer" not in name
                                   else averaged.actor.state_dict()[name], msg=name)

    obs, goal = np.ones(4, dtype=np.float32), np.zeros(3, dtype=np.float32)
    acting, evaluating = averaged.policy(training=True)(obs, goal), averaged.policy(training=False)(obs, goal)
    np.testing.assert_array_equal(acting, plain.policy(training=True)(obs, goal))
    assert np.abs(evaluating - acting).max() > 1e-4  # 20 updates apart: the average lags the actor
    np.testing.assert_array_equal(type(averaged).load_policy(averaged.policy_file())(obs, goal), evaluating)
    resumed = averaging_agent(method, 0.1)
    resumed.load_state_dict(averaged.state_dict())
    np.testing.assert_array_equal(resumed.policy(training=False)(obs, goal), evaluating)


# --- resume: every method ---------------------------------------------------------------------
def method_args(method, vae, dataset) -> list[str]:
    """`--method` and what it needs: image agents a VAE (and its dataset, for fine-tuning; the smoke
    profile fine-tunes); "crl-pixels" is crl on pixels, with no VAE; "crl-gaussian" crl with its Gaussian policy
    and an averaged actor;
    "crl-td" crl on pixels with the td_infonce loss (its target critic)."""
    if method == "crl-pixels":
        return ["--method", "crl", "--set", "crl.representation=pixels"]
    if method == "crl-td":
        return ["--method", "crl", "--set", "crl.representation=pixels", "--set", "crl.loss=td_infonce"]
    if method == "crl-gaussian":
        return ["--method", "crl", "--set", "crl.policy=gaussian", "--set", "crl.actor_average=0.05", "--vae", str(vae), "--dataset", str(dataset)]
    return ["--method", method] + ([] if method == "td3" else ["--vae", str(vae), "--dataset", str(dataset)])


@pytest.mark.parametrize("method", ["td3", "rig", "tdm", "crl", "crl-pixels", "crl-td"])
def test_resume_after_sigkill(method, tmp_path, workdir, smoke_vae, smoke_dataset):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "visgoal", "train", "--env", "point_maze", "--profile", "smoke", "--quiet", "--out", str(run), "--set", "train.total_steps=900", "--set",
               "train.checkpoint_every=300", "--set", "train.eval_every=300", *method_args(method, smoke_vae,
                                                                                            smoke_dataset)]
    # workdir's MLflow store already exists: creating one costs seconds
    env = {**os.environ, "VISGOAL_ROOT": str(ROOT), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (run / "checkpoint.pt").exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL, "the first run finished before it could be killed"
    checkpoint_step = torch.load(run / "checkpoint.pt", weights_only=True)["env_steps"]  # no code in it
    assert 300 <= checkpoint_step < 900
    assert not (run / "policy.pt").exists()

    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"from its checkpoint at env step {checkpoint_step}" in second.stderr
    # --quiet (a pipeline's log): a line per log interval and per evaluation, for `tail -f`
    assert re.search(r"step 900/900: \d+ steps/s, .*(critic|contrastive) loss", second.stderr), second.stderr[-2000:]
    assert re.search(r"eval at step 900: success [\d.]+, final distance", second.stderr), second.stderr[-2000:]
    with open(run / "curve.csv") as f:
        steps = [int(r["env_steps"]) for r in csv.DictReader(f)]
    assert steps[0] == 300 and steps[-1] == 900 and steps == sorted(set(steps))
    assert load_policy(run)[2]["env_steps"] == 900


@pytest.mark.parametrize("method", ["td3", "tdm"])
def test_evaluations_during_training_do_not_change_what_is_learned(method, tmp_path, workdir, smoke_vae,
                                                                    smoke_dataset):
    """Evaluation episodes use their own env, policy and seeds: how often they run (train.eval_every,
    train.eval_episodes, a speed setting) leaves the trained weights unchanged."""
    def train(out, every, episodes):
        assert main(["train", "--env", "point_maze", "--profile", "smoke", "--quiet",
                     "--out", str(out), "--set", "train.total_steps=300", "--set", f"train.eval_every={every}",
                     "--set", f"train.eval_episodes={episodes}", *method_args(method, smoke_vae, smoke_dataset)]) == 0
        return torch.load(out / "policy.pt", weights_only=True)["weights"]

    often, rarely = train(tmp_path / "often", 100, 2), train(tmp_path / "rarely", 300, 1)
    assert all(torch.equal(often[k], rarely[k]) for k in often)
    with open(tmp_path / "often" / "curve.csv") as f:
        assert [int(r["env_steps"]) for r in csv.DictReader(f)] == [100, 200, 300]


@pytest.mark.parametrize("method", ["td3", "rig", "crl-pixels", "crl-gaussian"])  # each view; rig fine-tunes its VAE
def test_updates_on_a_second_thread_learn_the_same_weights(method, tmp_path, workdir, smoke_vae, smoke_dataset):
    """speed.update_thread overlaps a step's updates with the env's step and render: it is a speed
    setting, so the weights (and a fine-tuned VAE, and the pixels encoder) are the same, byte for byte."""
    def train(out, threaded):
        assert main(["train", "--env", "point_maze", "--profile", "smoke", "--quiet", "--out", str(out),
                     "--set", "train.total_steps=300", "--set", f"speed.update_thread={str(threaded).lower()}",
                     *method_args(method, smoke_vae, smoke_dataset)]) == 0

    train(tmp_path / "threaded", True)
    train(tmp_path / "serial", False)
    names = {"td3": ["policy.pt"], "crl-pixels": ["policy.pt"]}.get(method, ["policy.pt", "vae.pt"])
    for name in names:
        assert (tmp_path / "threaded" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes(), name


@pytest.mark.parametrize("method", ["td3", "rig", "tdm", "crl", "crl-pixels", "crl-gaussian"])
def test_resumed_run_equals_uninterrupted_run(method, tmp_path, workdir, smoke_vae, smoke_dataset):
    """Checkpoints carry every RNG state (and the fine-tuned VAE): stopping and continuing changes nothing."""
    def train(out, total):
        assert main(["train", "--env", "point_maze", "--profile", "smoke", "--quiet",
                     "--out", str(out), "--set", f"train.total_steps={total}", "--set", "train.checkpoint_every=200",
                     "--set", "train.eval_every=200", *method_args(method, smoke_vae, smoke_dataset)]) == 0

    train(tmp_path / "straight", 400)
    train(tmp_path / "resumed", 200)
    train(tmp_path / "resumed", 400)  # continues from the final checkpoint of the 200-step run
    names = {"td3": ["policy.pt"], "crl-pixels": ["policy.pt"]}.get(method, ["policy.pt", "vae.pt"])
    for name in names:
        straight = torch.load(tmp_path / "straight" / name, weights_only=True)
        resumed = torch.load(tmp_path / "resumed" / name, weights_only=True)
        keys = ["weights", "encoder"] if method == "crl-pixels" else ["weights" if name == "policy.pt" else "state_dict"]
        for key in keys:  # the pixels encoder is saved beside the actor
            assert all(torch.equal(straight[key][k], resumed[key][k]) for k in straight[key]), (name, key)


@pytest.mark.parametrize("every", [1, 3])
def test_updates_run_every_kth_env_step(every, tmp_path, workdir):
    """`train.update_every`: a round of updates after every k-th env step, none between."""
    from tqdm import tqdm

    from visgoal.agents.workspace import Workspace

    params = load_params(profile="smoke", overrides=[f"train.update_every={every}", "train.learning_starts=10",
                                                     "speed.update_thread=false"])
    workspace = Workspace("point_maze", "td3", 0, tmp_path, params, progress=False)
    steps_at_update = []
    rounds = workspace.updates
    workspace.updates = lambda: steps_at_update.append(workspace.env_steps) or rounds()
    workspace.bar = tqdm(disable=True)
    try:
        while workspace.env_steps < 120:
            workspace.run_episode(120)
    finally:
        workspace.close()
    first = steps_at_update[0]  # the first step with a stored episode to sample from
    assert steps_at_update == list(range(first, 121, every)) and first % every == 0, steps_at_update


def test_exploration_noise_anneals_and_ou_is_correlated():
    from visgoal.agents.actor import ExplorationNoise

    noise = ExplorationNoise("gaussian", 2, start=0.5, final=0.1, anneal_steps=100, theta=0.15,
                             rng=np.random.default_rng(0))
    assert noise.scale(0) == 0.5 and noise.scale(50) == pytest.approx(0.3) and noise.scale(1000) == pytest.approx(0.1)
    ou = ExplorationNoise("ou", 1, start=0.2, final=0.2, anneal_steps=0, theta=0.15, rng=np.random.default_rng(0))
    series = np.array([ou.sample(0)[0] for _ in range(2000)])
    assert np.corrcoef(series[:-1], series[1:])[0, 1] > 0.7
    with pytest.raises(ValueError, match="unknown noise"):
        ExplorationNoise("pink", 1, 0.1, 0.1, 0, 0.15, np.random.default_rng(0))


def test_sigterm_ends_the_run_killed_and_leaves_no_temporary_file(tmp_path, workdir):
    """Snakemake cancelling a job, or a scheduler's kill: the MLflow run ends KILLED (not RUNNING forever)."""
    import mlflow

    run = tmp_path / "run"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [sys.executable, "-m", "visgoal", "train", "--env", "point_maze", "--method", "td3", "--profile",
               "smoke", "--quiet", "--out", str(run), "--set", "train.total_steps=5000", "--set",
               "train.checkpoint_every=200"]
    env = {**os.environ, "VISGOAL_ROOT": str(ROOT), "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": uri}
    job = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "checkpoint.pt").exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=60)
    assert job.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    client = mlflow.MlflowClient(uri)
    (found,) = client.search_runs([client.get_experiment_by_name(experiment_name("point_maze", "smoke")).experiment_id])
    assert found.info.status == "KILLED"
    assert not list(run.glob(".*.tmp-*")) and not (run / "policy.pt").exists()


def test_a_foreign_checkpoint_fails_in_one_line(tmp_path, workdir, capsys):
    (tmp_path / "checkpoint.pt").write_bytes(np.random.default_rng(0).bytes(4000))
    assert main(["train", "--env", "point_maze", "--method", "td3", "--profile", "smoke", "--quiet",
                 "--out", str(tmp_path)]) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert "not a visgoal checkpoint" in line and "delete it" in line and "weights_only" not in line


def test_a_damaged_policy_fails_evaluate_in_one_line(tmp_path, workdir, capsys):
    """Empty, other bytes (each seed a different unpickling failure: IndexError, UnicodeDecodeError,
    KeyError, UnpicklingError) or a real policy.pt cut in half: one line naming the file and the fix."""
    good = tmp_path / "good" / "seed0"
    assert main(["train", "--env", "point_maze", "--method", "td3", "--profile", "smoke", "--quiet",
                 "--out", str(good)]) == 0
    real = (good / "policy.pt").read_bytes()
    damaged = {"empty": b"", "cut in half": real[: len(real) // 2]}
    damaged.update({f"random bytes {seed}": np.random.default_rng(seed).bytes(4000) for seed in (0, 17, 54, 62)})
    capsys.readouterr()
    for name, data in damaged.items():
        runs = tmp_path / name.replace(" ", "_")
        (runs / "seed0").mkdir(parents=True)
        (runs / "seed0" / "policy.pt").write_bytes(data)
        assert main(["evaluate", "--env", "point_maze", "--method", "td3", "--profile", "smoke", "--quiet",
                     "--seeds", "0", "--runs", str(runs), "--out", str(runs / "td3_eval.csv")]) == 2, name
        (line,) = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
        assert line.startswith(f"visgoal evaluate: error: {runs / 'seed0' / 'policy.pt'}: not a visgoal policy"), line
        assert "python -m visgoal train" in line and "weights_only" not in line, line
        assert not (runs / "td3_eval.csv").exists()


def test_a_checkpoint_points_past_its_own_step(tmp_path, workdir):
    """A checkpoint stores the step of the next one, past its own: resumed, the run saves at the next
    multiple of train.checkpoint_every, not again after its first episode."""
    assert main(["train", "--env", "point_maze", "--method", "td3", "--profile", "smoke", "--quiet", "--out",
                 str(tmp_path), "--set", "train.total_steps=200", "--set", "train.checkpoint_every=150"]) == 0
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert saved["env_steps"] >= 200 and saved["next_checkpoint"] == 300


def test_finished_run_started_again_rewrites_its_outputs(tmp_path, workdir):
    """A pipeline that re-runs a finished job (outputs removed, checkpoint kept) gets its outputs back."""
    args = ["train", "--env", "point_maze", "--method", "td3", "--profile", "smoke", "--quiet", "--out",
            str(tmp_path), "--set", "train.total_steps=200"]
    assert main(args) == 0
    curve = (tmp_path / "curve.csv").read_text()
    for name in ("curve.csv", "policy.pt"):
        (tmp_path / name).unlink()
    assert main(args) == 0
    assert (tmp_path / "curve.csv").read_text() == curve and (tmp_path / "policy.pt").is_file()


def test_resume_into_a_new_tracking_store(tmp_path, workdir, monkeypatch, caplog):
    """A checkpoint whose MLflow run is gone (store deleted or moved) resumes into a fresh run."""
    import mlflow

    base = ["train", "--env", "point_maze", "--method", "td3", "--profile", "smoke", "--quiet", "--out",
            str(tmp_path / "run"), "--set", "train.total_steps=200"]
    assert main(base) == 0
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'other.db'}")
    assert main([*base[:-1], "train.total_steps=300"]) == 0
    assert "is not in the store; logging to a new run" in caplog.text
    assert "from its checkpoint at env step 200" in caplog.text
    (run,) = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'other.db'}").search_runs(
        [mlflow.get_experiment_by_name(experiment_name("point_maze", "smoke")).experiment_id])
    assert run.data.metrics["eval/success_rate"] >= 0 and run.data.params["train.total_steps"] == "300"


def test_checkpoint_of_another_vae_is_not_resumed(tmp_path, workdir, smoke_vae, smoke_dataset, caplog):
    """The outputs removed (as Snakemake and DVC do before a rerun) and the run started again with
    another VAE: the checkpoint's latents and policy belong to the old one, so it starts afresh."""
    import shutil

    other = tmp_path / "other_vae.pt"
    shutil.copy(smoke_vae, other)
    with open(other, "ab") as f:  # the same weights, another file: the content is what counts
        f.write(b"\0")
    run = tmp_path / "run"

    def train(vae):
        return main(["train", "--env", "point_maze", "--method", "rig", "--profile", "smoke", "--quiet", "--out",
                     str(run), "--set", "train.total_steps=200", "--vae", str(vae), "--dataset", str(smoke_dataset)])

    assert train(smoke_vae) == 0
    for name in ("policy.pt", "curve.csv", "vae.pt"):
        (run / name).unlink()
    assert train(other) == 0
    assert "does not match this run (changed: VAE): starting afresh" in caplog.text
    assert "from its checkpoint" not in caplog.text
    caplog.clear()
    assert train(other) == 0 and "from its checkpoint at env step 200" in caplog.text  # the same inputs resume


def test_another_environments_tuning_restarts_nothing(tmp_path, workdir, caplog, monkeypatch):
    """A run holds its own environment's resolved parameters, not another environment's tuning: a
    change to point_maze's (`params:` in envs/point_maze.yaml) resumes a fetch_reach run from its checkpoint."""
    import shutil

    import yaml

    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    shutil.copytree(ROOT / "envs", root / "envs")
    monkeypatch.setenv("VISGOAL_ROOT", str(root))
    base = ["train", "--env", "fetch_reach", "--method", "td3", "--profile", "smoke", "--quiet", "--out",
            str(tmp_path / "run"), "--set", "train.total_steps=200"]
    assert main(base) == 0
    spec = yaml.safe_load((root / "envs" / "point_maze.yaml").read_text())
    spec["params"]["vae"]["latent_dim"] = 8
    (root / "envs" / "point_maze.yaml").write_text(yaml.safe_dump(spec))
    assert main([*base[:-1], "train.total_steps=300"]) == 0
    assert "from its checkpoint at env step 200" in caplog.text


def test_checkpoint_of_other_parameters_is_not_resumed(tmp_path, workdir, caplog):
    base = ["train", "--env", "point_maze", "--method", "td3", "--profile", "smoke", "--quiet", "--out", str(tmp_path),
            "--set", "train.total_steps=200"]
    assert main(base) == 0
    assert main([*base, "--set", "td3.actor_lr=0.0005"]) == 0
    assert "does not match this run (changed: parameters): starting afresh" in caplog.text
    assert "from its checkpoint" not in caplog.text
    # Only the step budget may change: a finished run is extended from its checkpoint.
    assert main([*base[:-1], "train.total_steps=300", "--set", "td3.actor_lr=0.0005"]) == 0
    assert "from its checkpoint at env step 200" in caplog.text
    # and a setting that changes no number: where the updates run
    assert main([*base[:-1], "train.total_steps=400", "--set", "td3.actor_lr=0.0005",
                 "--set", "speed.update_thread=false"]) == 0
    assert "from its checkpoint at env step 300" in caplog.text
