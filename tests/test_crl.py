"""Contrastive RL (agents/crl.py): its positive goals, its critic, and a run through the CLI."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from visgoal.agents.crl import CRLAgent, CRLConfig
from visgoal.agents.replay import STRATEGIES, EpisodeReplay, negative_distance
from visgoal.agents.td3 import TD3Config


def test_positive_goals_follow_the_geometric_offset_and_stay_inside_their_episode():
    gamma, T = 0.9, 120
    rng = np.random.default_rng(0)
    replay = EpisodeReplay(100 * T, T, (2,), 1, 1, {"geometric": 1.0}, negative_distance, geometric_discount=gamma)
    for e in range(100):
        n = int(rng.integers(20, T + 1))
        steps = np.arange(n + 1, dtype=np.float32)[:, None]
        replay.add_episode(np.hstack([steps, np.full_like(steps, e)]), steps + 1000 * e, np.zeros(1),
                           np.zeros((n, 1)), np.zeros(n), np.zeros(n))
    batch = replay.sample(50_000, rng)
    assert (batch["strategy"] == STRATEGIES.index("geometric")).all()
    t, n, step = batch["t"], batch["length"], batch["goal_step"]
    offset = step - t
    # inside its episode, strictly after the sampled step, and the very latent stored there
    assert (offset >= 1).all() and (step <= n).all()
    episode = batch["obs"][:, 1].astype(int)
    np.testing.assert_array_equal(batch["goal"][:, 0], step + 1000 * episode)
    # far from the episode's end the offset is Geometric(1 - gamma): P(k) = gamma^(k-1) (1 - gamma)
    free = offset[n - t > 80]
    for k in (1, 2, 5, 10):
        assert np.mean(free == k) == pytest.approx(gamma ** (k - 1) * (1 - gamma), abs=0.01), k
    assert free.mean() == pytest.approx(1 / (1 - gamma), rel=0.05)
    # near it, a draw past the end is the last step: P(step = n) = gamma^(n - t - 1)
    near = (n - t) == 3
    assert np.mean(step[near] == n[near]) == pytest.approx(gamma ** 2, abs=0.03)


def test_the_contrastive_critic_learns_to_pick_the_positive_goal():
    """Goals that the state and action determine: the critic's accuracy at picking each row's own
    goal among the batch's rises from chance (1/64) to many times it, and the actor's loss is finite.
    (BCE over 63 negatives per positive first drives every logit down; the positives separate later.)"""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    agent = CRLAgent(4, 3, 2, -np.ones(2), np.ones(2), TD3Config(hidden=[64, 64], batch_size=64),
                     CRLConfig(discount=0.9, repr_dim=16, hidden=(64, 64)), rng)
    mixing = torch.randn(6, 3)

    def batch():
        obs, action = torch.randn(64, 4), torch.rand(64, 2) * 2 - 1
        return {"obs": obs, "action": action, "goal": torch.tanh(torch.cat([obs, action], 1) @ mixing)}

    first = agent.update(batch())
    for _ in range(1000):
        metrics = agent.update(batch())
    assert first["critic/accuracy"] < 0.1 and metrics["critic/accuracy"] > 0.3, (first, metrics)
    assert metrics["losses/contrastive"] < first["losses/contrastive"]
    assert metrics["critic/logits_positive"] > metrics["critic/logits_negative"]
    assert np.isfinite(metrics["losses/actor"])


def test_train_and_evaluate_through_the_cli(workdir, tmp_path, env="point_maze"):
    """The real CLI: crl trains on the VAE's latents and evaluates on the protocol like the others."""
    from conftest import run_cli

    from visgoal.agents import load_policy
    from visgoal.cli import main

    data = tmp_path / "data"
    for args in (["dataset", "--env", env, "--out", str(data / "vae_dataset.h5")],
                 ["train-vae", "--env", env, "--dataset", str(data / "vae_dataset.h5"), "--out", str(data / "vae.pt")]):
        result = run_cli(*args, "--profile", "smoke", "--quiet")
        assert result.returncode == 0, result.stderr[-2000:]
    run = tmp_path / "crl" / "seed0"
    assert main(["train", "--env", env, "--method", "crl", "--profile", "smoke", "--quiet", "--vae",
                 str(data / "vae.pt"), "--dataset", str(data / "vae_dataset.h5"), "--out", str(run)]) == 0
    view, _, meta = load_policy(run)
    assert meta["method"] == "crl" and view.kind == "latent"
    assert main(["evaluate", "--env", env, "--method", "crl", "--profile", "smoke", "--quiet", "--runs",
                 str(run.parent), "--out", str(tmp_path / "crl_eval.csv")]) == 0
    with open(tmp_path / "crl_eval.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(float(r["final_distance"]) >= 0 and float(r["latent_distance"]) >= 0 for r in rows)
