"""Contrastive RL (agents/crl.py): its positive goals, its critic, and a run through the CLI."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from conftest import demos_args

from visgoal.agents.crl import CRLAgent, CRLConfig
from visgoal.agents.encoders import ConvEncoder, random_shift
from visgoal.agents.replay import STRATEGIES, EpisodeReplay, negative_distance
from visgoal.agents.td3 import TD3Config
from visgoal.config import load_params

PIXELS = {"feature_dim": 16, "shift": 4, "precision": "bf16-mixed"}


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
    # near it, the same law truncated to the steps left and renormalized: with 3 left,
    # P(k) = gamma^(k-1) (1 - gamma) / (1 - gamma^3); the last frame is not a catch-all
    near = (n - t) == 3
    for k in (1, 2, 3):
        assert np.mean(offset[near] == k) == pytest.approx(gamma ** (k - 1) * (1 - gamma) / (1 - gamma ** 3),
                                                           abs=0.03), k


def test_positive_goals_past_an_absorbing_end_land_on_its_final_state():
    """An episode that ended in an absorbing state (the pendulum's fall) stays there: the offset
    keeps its whole geometric law, and what lies past the end is the final state."""
    gamma, n = 0.9, 30
    rng = np.random.default_rng(0)
    replay = EpisodeReplay(10 * n, n, (1,), 1, 1, {"geometric": 1.0}, negative_distance, geometric_discount=gamma)
    steps = np.arange(n + 1, dtype=np.float32)[:, None]
    for cut in (False, True):  # one episode of each kind, told apart by their achieved goals
        terminated = np.zeros(n)
        terminated[-1] = cut
        replay.add_episode(steps, steps + 1000 * cut, np.zeros(1), np.zeros((n, 1)), np.zeros(n), terminated)
    batch = replay.sample(100_000, rng)
    offset, left = batch["goal_step"] - batch["t"], batch["length"] - batch["t"]
    fell = batch["goal"][:, 0] >= 1000
    near = fell & (left == 3)  # P(1) = 1 - gamma, P(2) = gamma (1 - gamma), the final state the rest
    for k, p in ((1, 1 - gamma), (2, gamma * (1 - gamma)), (3, gamma ** 2)):
        assert np.mean(offset[near] == k) == pytest.approx(p, abs=0.03), k
    near = ~fell & (left == 3)  # cut short: renormalized within the episode, as before
    assert np.mean(offset[near] == 3) == pytest.approx(gamma ** 2 * (1 - gamma) / (1 - gamma ** 3), abs=0.03)


def test_the_contrastive_critic_learns_to_pick_the_positive_goal():
    """Goals that the state and action determine: the critic's accuracy at picking each row's own
    goal among the batch's rises from chance (1/64) to many times it, and the actor's loss is finite."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    agent = CRLAgent(4, 3, 2, -np.ones(2), np.ones(2), TD3Config(hidden=[64, 64], batch_size=64),
                     CRLConfig(loss="infonce", discount=0.9, repr_dim=16, hidden=(64, 64), pixels=PIXELS), rng)
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


def train_on_a_chain(K: int = 8, gamma: float = 0.9, n: int = 64) -> CRLAgent:
    """TD InfoNCE on a chain 0 -> 1 -> ... -> K - 1 that ignores the action and ends, absorbing, in
    K - 1. Its batches hold next states and random goals only, never a state two steps on."""
    torch.manual_seed(0)
    agent = CRLAgent(K, K, 1, -np.ones(1), np.ones(1), TD3Config(hidden=[64, 64], batch_size=n, normalize_inputs=False),
                     CRLConfig(loss="td_infonce", discount=gamma, repr_dim=16, hidden=(64, 64), pixels=PIXELS,
                               target_polyak=0.05), np.random.default_rng(0))
    assert {"next_obs", "next_achieved", "terminated"} <= set(agent.batch_keys) and "critic_target" in agent.nets()
    eye, generator = torch.eye(K), torch.Generator().manual_seed(0)
    for _ in range(1000):
        s = torch.randint(0, K - 1, (n,), generator=generator)
        agent.update({"obs": eye[s], "action": torch.rand(n, 1, generator=generator) * 2 - 1,
                      "goal": eye[torch.randint(0, K, (n,), generator=generator)], "next_obs": eye[s + 1],
                      "next_achieved": eye[s + 1], "terminated": (s + 1 == K - 1).float()})
    return agent


def chain_logits(agent: CRLAgent, start: int, K: int = 8) -> torch.Tensor:
    """The twins' mean logits from `start` against the K states."""
    eye = torch.eye(K)
    with torch.no_grad():
        phi = agent.critic.state_action(eye[[start]], torch.zeros(1, 1), eye[[K - 1]])
        return agent.critic.pairs(phi, agent.critic.goal(eye)).mean(0)[0]


def test_td_infonce_learns_the_discounted_occupancy_from_next_states_alone():
    """What it learns beyond one step, TD brings. From s, the softmax over the eight states is the
    occupancy (1 - gamma) gamma^(k - s - 1) for s < k < 7, and gamma^(6 - s) for the absorbing 7."""
    K, gamma = 8, 0.9
    agent = train_on_a_chain(K, gamma)
    for start in (0, 3):
        learned = chain_logits(agent, start, K).softmax(0).numpy()
        true = np.array([(1 - gamma) * gamma ** (k - start - 1) if k > start else 0.0 for k in range(K)])
        true[K - 1] = gamma ** (K - 2 - start)
        np.testing.assert_allclose(learned, true, atol=0.06, err_msg=f"from state {start}")
        assert learned[start + 2 : K - 1].sum() > 0.6 * true[start + 2 : K - 1].sum()  # two steps on and more


def test_the_gaussian_policys_log_probability_is_the_squashed_normals():
    from torch.distributions import Normal, TanhTransform, TransformedDistribution

    from visgoal.agents.networks import GaussianActor

    torch.manual_seed(0)
    actor = GaussianActor(5, 3, [16], -np.ones(3), np.ones(3), normalize=False)
    x = torch.randn(4000, 5)
    action, log_prob = actor.sample_normalized(x, torch.Generator().manual_seed(1))
    mean, raw = actor.net(x).chunk(2, dim=-1)
    exact = TransformedDistribution(Normal(mean, torch.nn.functional.softplus(raw) + 1e-3), [TanhTransform()])
    inside = action.abs().max(-1).values < 0.999  # where float32's atanh(action) is still exact enough
    assert inside.float().mean() > 0.9
    torch.testing.assert_close(log_prob[inside], exact.log_prob(action).sum(-1)[inside], rtol=1e-3, atol=1e-3)
    assert torch.equal(actor(x), torch.tanh(mean)), "as a module it gives its mode"
    log_prob.mean().backward()
    assert actor.net[0].weight.grad is not None, "reparameterized: the log-probability's gradient reaches the net"


def test_the_gaussian_policy_samples_in_rollouts_acts_on_its_mode_in_evaluation_and_tunes_alpha():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    agents = {target: CRLAgent(4, 3, 2, -np.ones(2), np.ones(2), TD3Config(hidden=[32, 32], batch_size=32),
                               CRLConfig(repr_dim=8, hidden=(32, 32), policy="gaussian", target_entropy=target,
                                         pixels=PIXELS), rng)
              for target in (-10.0, 5.0)}  # far below and above what a 2-d squashed Gaussian has
    obs, goal = np.ones(4, dtype=np.float32), np.zeros(3, dtype=np.float32)
    agent = agents[5.0]
    rollout, evaluation = agent.policy(training=True), agent.policy(training=False)
    sampled = np.array([rollout(obs, goal) for _ in range(50)])
    assert sampled.std(0).min() > 0.05 and np.all(np.abs(sampled) < 1)
    assert np.array_equal(evaluation(obs, goal), evaluation(obs, goal))
    np.testing.assert_array_equal(agent.explore(sampled[0], step=10_000), sampled[0])  # no noise on a sample
    again = CRLAgent.load_policy(agent.policy_file())(obs, goal)
    np.testing.assert_array_equal(evaluation(obs, goal), again)

    batch = {"obs": torch.randn(32, 4), "action": torch.rand(32, 2) * 2 - 1, "goal": torch.randn(32, 3)}
    alphas = {}
    for target, tuned in agents.items():
        for _ in range(30):
            metrics = tuned.update(batch)
        alphas[target] = metrics["values/alpha"]
        assert np.isfinite(metrics["losses/actor"]) and np.isfinite(metrics["values/entropy"])
    assert alphas[-10.0] < 1.0 < alphas[5.0], alphas  # entropy above its target: alpha falls; below: it rises


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


def test_random_shift_crops_the_border_padded_image_at_one_offset_per_image():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 12, 12, 3), dtype=torch.uint8)
    shifted = random_shift(images, 2)
    assert shifted.shape == (64, 12, 12, 3) and shifted.dtype == torch.uint8 and shifted.is_contiguous()
    padded = np.pad(images.numpy(), ((0, 0), (2, 2), (2, 2), (0, 0)), mode="edge")
    offsets = set()
    for image, out in zip(padded, shifted.numpy()):
        found = [(dy, dx) for dy in range(5) for dx in range(5) if np.array_equal(image[dy : dy + 12, dx : dx + 12], out)]
        assert found, "not a crop of the padded image"
        offsets.add(found[0])
    assert len(offsets) > 10  # each image its own offset, from the 25 possible
    assert torch.equal(random_shift(images, 0), images)
    torch.manual_seed(1)
    as_float = random_shift(images.float(), 3)  # any dtype, the same draws
    torch.manual_seed(1)
    assert torch.equal(as_float, random_shift(images, 3).float())


@pytest.mark.parametrize("loss", ["infonce", "td_infonce"])
def test_pixel_encoder_learns_with_the_contrastive_loss_and_acts_from_images(loss):
    """crl's pixels representation: the encoder reads uint8 images, only the critics' losses move it,
    and the policy acts from an observation stacked over its goal image. Under td_infonce a Monte
    Carlo head trains the encoder too."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    agent = CRLAgent(0, 0, 2, -np.ones(2), np.ones(2), TD3Config(hidden=[32, 32], batch_size=16),
                     CRLConfig(representation="pixels", loss=loss, repr_dim=8, hidden=(32, 32), pixels=PIXELS), rng,
                     image_size=64)
    assert isinstance(agent.encoder, ConvEncoder) and not agent.actor.normalizer.enabled
    assert (agent.representation_critic is not None) == (loss == "td_infonce")
    images = torch.randint(0, 256, (16, 64, 64, 3), dtype=torch.uint8)
    batch = {"obs": images, "goal": images.roll(1, 0), "action": torch.rand(16, 2) * 2 - 1,
             "next_obs": images.roll(2, 0), "terminated": torch.zeros(16)}
    before = {k: v.clone() for k, v in agent.encoder.state_dict().items()}
    heads = [agent.critic, agent.representation_critic] if agent.representation_critic is not None else [agent.critic]
    heads_before = [[p.clone() for p in head.parameters()] for head in heads]
    metrics = agent.update(batch)
    assert np.isfinite(metrics["losses/contrastive"]) and 0 <= metrics["critic/accuracy"] <= 1
    assert all(not torch.equal(a, b) for head, old in zip(heads, heads_before) for a, b in zip(head.parameters(), old))
    if loss == "td_infonce":
        assert np.isfinite(metrics["losses/representation"]) and "representation_critic" in agent.nets()
    assert any(not torch.equal(before[k], v) for k, v in agent.encoder.state_dict().items())
    action = agent.policy(training=False)(images[0].numpy(), images[1].numpy())
    assert action.shape == (2,) and np.all(np.abs(action) <= 1)
    saved = agent.policy_file()
    assert saved["meta"]["encoder"]["feature_dim"] == 16
    again = CRLAgent.load_policy(saved)(images[0].numpy(), images[1].numpy())
    np.testing.assert_array_equal(action, again)


# Two views side by side, a falling pole, the largest scene; the smoke DAG runs crl on all six.
@pytest.mark.parametrize("env", ["fetch_reach", "inverted_pendulum", "franka_kitchen"])
def test_pixels_train_and_evaluate_through_the_cli_with_no_vae(env, workdir, tmp_path, smoke_demos):
    """crl.representation=pixels needs no dataset and no VAE: it trains and evaluates from images alone."""
    from visgoal.agents import load_policy
    from visgoal.cli import main

    run = tmp_path / "crl" / "seed0"
    pixels = ["--set", "crl.representation=pixels", "--set", "evaluate.episodes=1"]  # CI time: the kitchen's are long
    assert main(["train", "--env", env, "--method", "crl", "--profile", "smoke", "--quiet", "--out", str(run),
                 "--vae", str(tmp_path / "absent.pt"), *pixels, *demos_args(env, smoke_demos)]) == 0  # a VAE is not read
    view, _, meta = load_policy(run)
    assert view.kind == "pixels" and meta["encoder"]["image_size"] == 64
    assert not (run / "vae.pt").exists()
    out = tmp_path / "crl_eval.csv"
    assert main(["evaluate", "--env", env, "--method", "crl", "--profile", "smoke", "--quiet", "--runs",
                 str(run.parent), "--out", str(out), *pixels]) == 0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and all(r["latent_distance"] == "" and float(r["final_distance"]) >= 0 for r in rows)
    with open(run / "curve.csv") as f:
        assert all(r["eval_latent_distance"] == "" for r in csv.DictReader(f))  # no latent space


def test_imagined_goals_need_the_latent_representation(workdir, tmp_path, capsys):
    from visgoal.cli import main

    assert main(["train", "--env", "point_maze", "--method", "crl", "--profile", "smoke", "--quiet", "--out",
                 str(tmp_path / "run"), "--set", "crl.representation=pixels",
                 "--set", "crl.exploration_goals=prior"]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "crl.exploration_goals=prior needs crl.representation=latent" in \
        err.strip().splitlines()[-1], err


def test_each_representation_gets_its_own_evaluation_in_mlflow(workdir, tmp_path, smoke_vae, smoke_dataset):
    """crl on latents and on pixels share a run name (crl, seed k); evaluating one logs into its own
    training run, which the run's `view` tag tells apart, not into the newest of the two."""
    import mlflow

    from visgoal.cli import main
    from visgoal.tracking import experiment_name, init_store

    runs = {}
    for representation in ("latent", "pixels"):
        runs[representation] = tmp_path / representation / "seed7"  # a seed no other test of the store uses
        assert main(["train", "--env", "point_maze", "--method", "crl", "--seed", "7", "--profile", "smoke", "--quiet",
                     "--out",
                     str(runs[representation]), "--vae", str(smoke_vae), "--dataset", str(smoke_dataset), "--set",
                     f"crl.representation={representation}", "--set", "train.total_steps=150"]) == 0
    assert main(["evaluate", "--env", "point_maze", "--method", "crl", "--seeds", "7", "--profile", "smoke", "--quiet",
                 "--runs", str(runs["latent"].parent), "--out", str(tmp_path / "latent_eval.csv")]) == 0
    client = mlflow.MlflowClient(init_store())
    experiment = client.get_experiment_by_name(experiment_name("point_maze", "smoke"))
    found = client.search_runs([experiment.experiment_id], filter_string="tags.method = 'crl' and tags.seed = '7'")
    by_view = {run.data.tags["view"]: run for run in found if "view" in run.data.tags}
    assert set(by_view) == {"latent", "pixels"}
    assert "final_eval/success_rate" in by_view["latent"].data.metrics
    assert "final_eval/success_rate" not in by_view["pixels"].data.metrics  # the newer run, not evaluated


@pytest.mark.parametrize("env", ["point_maze", "inverted_pendulum"])
def test_state_diagnostic_pursues_the_goal_without_images(env, workdir, tmp_path):
    """crl.representation=state: the oracle's state and goal vector, goal-conditioned even where td3
    learns the env's own reward (inverted_pendulum), with no VAE."""
    from visgoal.agents import load_policy
    from visgoal.cli import main

    run = tmp_path / "crl" / "seed0"
    assert main(["train", "--env", env, "--method", "crl", "--profile", "smoke", "--quiet", "--out", str(run),
                 "--set", "crl.representation=state", "--set", "train.total_steps=200"]) == 0
    view, _, meta = load_policy(run)
    assert view.kind == "state" and meta["view"]["goal_conditioned"] and not view.needs_images


def test_a_checkpoint_or_policy_made_with_a_retired_option_is_refused_naming_its_tag(workdir, tmp_path, capsys):
    """A checkpoint whose critic has `crl.absorbing=sink`'s sink, or that records a retired option among
    its params, does not resume; a policy.pt that records one does not evaluate. One line each, naming
    the git tag that has the option."""
    from visgoal.cli import main
    from visgoal.config import RETIRED_TAG

    run = tmp_path / "crl" / "seed0"
    args = ["--env", "inverted_pendulum", "--method", "crl", "--profile", "smoke", "--quiet"]
    assert main(["train", *args, "--out", str(run), "--set", "crl.representation=state"]) == 0
    saved = torch.load(run / "checkpoint.pt", weights_only=False)
    assert saved["params"]["crl"]["representation"] == "state"  # what made it
    for retired, edit in (("crl.absorbing=sink", lambda state: state["agent"]["critic"].update(sink=torch.zeros(2, 1, 16))),
                          ("crl.loss=binary", lambda state: state["params"]["crl"].update(loss="binary"))):
        state = torch.load(run / "checkpoint.pt", weights_only=False)
        edit(state)
        torch.save(state, tmp_path / "checkpoint.pt")
        (tmp_path / "checkpoint.pt").replace(run / "checkpoint.pt")
        assert main(["train", *args, "--out", str(run), "--set", "crl.representation=state",
                     "--set", "train.total_steps=600"]) == 2
        err = capsys.readouterr().err
        assert retired in err and RETIRED_TAG in err and "Traceback" not in err, err
        torch.save(saved, run / "checkpoint.pt")
    policy = torch.load(run / "policy.pt", weights_only=True)
    policy["meta"]["view"]["latent_velocity"] = True  # as a latent policy of the tag's recorded it
    torch.save(policy, run / "policy.pt")
    assert main(["evaluate", *args, "--runs", str(tmp_path / "crl"), "--seeds", "0",
                 "--out", str(tmp_path / "eval.csv")]) == 2
    err = capsys.readouterr().err
    assert "latent_velocity=True" in err and RETIRED_TAG in err and "Traceback" not in err, err
    assert not (tmp_path / "eval.csv").exists()


def test_a_fall_is_terminal_for_every_goal_and_a_stop_at_the_goal_is_not(workdir, tmp_path):
    """inverted_pendulum's fall (`termination: absorbing`) is stored as terminal, also by an agent
    pursuing its own goals; the kitchen's stop at its own goal (`cut`, the default) is not."""
    from tqdm import tqdm

    from visgoal.agents.workspace import Workspace

    params = load_params(profile="smoke", overrides=["crl.representation=state", "train.learning_starts=1000"])
    pendulum = Workspace("inverted_pendulum", "crl", 0, tmp_path / "p", params, progress=False)
    kitchen = Workspace("franka_kitchen", "crl", 0, tmp_path / "k", params, progress=False)
    try:
        assert pendulum.view.goal_conditioned and pendulum.terminal_for_goals
        assert kitchen.view.goal_conditioned and not kitchen.terminal_for_goals
        pendulum.bar = tqdm(disable=True)
        for _ in range(3):  # random actions: the pole falls long before the 200-step limit
            pendulum.run_episode(1000)
        lengths = pendulum.replay.length[:3]
        assert (lengths < 200).all()
        assert all(pendulum.replay.terminated[i, n - 1] == 1 and not pendulum.replay.terminated[i, : n - 1].any()
                   for i, n in enumerate(lengths))
    finally:
        pendulum.close(), kitchen.close()
