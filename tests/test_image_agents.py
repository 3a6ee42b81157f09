"""The image agents, RIG and TDM: training and evaluation through the CLI, TDM's targets, the
relabelling mixture, the imagined-goal prior, and VAE fine-tuning with re-encoding.
(Resume for both methods is tested beside td3's, in test_td3.py.)"""

import csv
import time
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
import torch
import yaml

from conftest import run_cli
from visgoal import paths
from visgoal.agents import load_policy
from visgoal.agents.policy import Policy, countdown
from visgoal.agents.replay import STRATEGIES, EpisodeReplay, negative_distance
from visgoal.agents.td3 import TD3Config
from visgoal.agents.tdm import TDMAgent, TDMConfig
from visgoal.agents.views import LatentView, VAEFineTuner
from visgoal.cli import main
from visgoal.config import RETIRED_TAG, load_params, parse_override
from visgoal.device import resolve
from visgoal.tracking import experiment_name, file_hash
from visgoal.vae import VAE

SMOKE = load_params(profile="smoke")


@pytest.fixture(scope="module")
def env_vae(workdir):
    """results/smoke/<env>/vae_dataset.h5 and vae.pt (the smoke profile's tree), made once per env through
    the CLI."""
    def make(env):
        out = workdir / paths.root("smoke") / env
        if not (out / "vae.pt").is_file():
            for args in (["dataset", "--env", env, "--out", str(out / "vae_dataset.h5")],
                         ["train-vae", "--env", env, "--dataset", str(out / "vae_dataset.h5"),
                          "--out", str(out / "vae.pt")]):
                result = run_cli(*args, "--profile", "smoke", "--quiet")
                assert result.returncode == 0, result.stderr[-2000:]
        return out
    return make


@pytest.mark.parametrize("method", ["rig", "tdm"])
def test_train_and_evaluate_through_the_cli(method, workdir, env_vae, env="point_maze"):
    """One env here, in detail; every env runs in the smoke DAG of test_pipeline.py."""
    out = env_vae(env)  # the CLI's defaults find results/smoke/<env>/vae.pt and vae_dataset.h5 from the cwd
    assert main(["train", "--env", env, "--method", method, "--seed", "0", "--profile", "smoke", "--quiet"]) == 0
    run = out / method / "seed0"
    with open(run / "curve.csv") as f:
        curve = list(csv.DictReader(f))
    assert int(curve[-1]["env_steps"]) == SMOKE["train"]["total_steps"]
    assert all(float(row["eval_latent_distance"]) >= 0 for row in curve)
    view, _, meta = load_policy(run)  # with the run's own (fine-tuned) vae.pt
    assert meta["method"] == method and view.vae.latent_dim == SMOKE["vae"]["latent_dim"]

    trained_by = time.time()
    assert main(["evaluate", "--env", env, "--method", method, "--profile", "smoke", "--quiet"]) == 0
    with open(out / f"{method}_eval.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(SMOKE["seeds"]) * SMOKE["evaluate"]["episodes"]
    assert all(r["method"] == method and float(r["latent_distance"]) >= 0 for r in rows)
    assert (out / f"{method}_eval.png").is_file()

    # True and latent distance side by side in the run, with the relabelling mixture as params.
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(experiment_name(env, "smoke"))
    found = client.search_runs([experiment.experiment_id], f"tags.method = '{method}'")
    assert len(found) == 1
    data = found[0].data
    assert {"eval/latent_distance", "eval/final_distance", "eval/success_rate",
            "final_eval/latent_distance"} <= set(data.metrics)
    assert data.params[f"{method}.relabel.prior"] == str(SMOKE[method]["relabel"]["prior"])
    # Where it ran, resolved (`device: auto` says cpu here), and what drew its pictures.
    here = resolve("auto")
    assert data.params["device"] == data.tags["device"] == data.tags["evaluation_device"] == here
    assert meta["params"]["device"] == here and data.tags["gl_renderer"] not in ("", "unknown")
    (vae_run,) = client.search_runs([experiment.experiment_id], "tags.method = 'vae'")
    assert vae_run.data.tags["device"] == here
    # A researcher's view: model-training experiments, input hashes as tags, what the run made as
    # artifacts, and a duration that is the training's (the evaluation logged into it later).
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert all(len(data.tags[f"input_md5.{name}"]) == 32 for name in ("env_spec", "VAE", "VAE_dataset"))
    assert data.tags["input_md5.VAE"] == file_hash(out / "vae.pt")
    artifacts = {a.path for a in client.list_artifacts(found[0].info.run_id)}
    assert {"policy.pt", "curve.csv", "vae.pt", "evaluation"} <= artifacts, artifacts
    assert found[0].info.status == "FINISHED" and found[0].info.end_time / 1000 <= trained_by


@pytest.mark.parametrize("method,history", [("rig", None), ("tdm", None), ("crl", None), ("crl", "one_frame")])
def test_latent_history_trains_fine_tunes_and_evaluates(method, history, workdir, env_vae, env="point_maze"):
    """`image_agents.latent_frames`, point_maze's own (params.yaml's env_overrides): the actor reads its last
    k latents (and the goal, and tau for tdm); with one frame, the latent alone."""
    own = load_params(profile="smoke", env=env)
    frames = own["image_agents"]["latent_frames"]
    assert frames > 1 and SMOKE["image_agents"]["latent_frames"] == 1  # the other environments' default
    assert own["crl"]["loss"] == "td_infonce" != SMOKE["crl"]["loss"]
    assert own["crl"]["actor_average"] > 0 == SMOKE["crl"]["actor_average"]
    out = env_vae(env)
    run = out / f"{method}_{history or 'latent_frames'}"
    sets = ["--set", "image_agents.latent_frames=1"] if history else []
    assert main(["train", "--env", env, "--method", method, "--seed", "0", "--profile", "smoke", "--quiet",
                 *sets, "--out", str(run / "seed0")]) == 0
    view, _, meta = load_policy(run / "seed0")
    d = SMOKE["vae"]["latent_dim"]
    if history:
        assert view.frames == 1 and view.obs_dim == d
    else:
        assert view.frames == frames and view.obs_dim == frames * d
    if method != "crl":
        assert meta["input_dim"] == view.obs_dim + d + (method == "tdm")  # the goal, and tau
    else:  # what acts in evaluations is point_maze's averaged actor, which its checkpoint carries
        averaged = torch.load(run / "seed0" / "checkpoint.pt", weights_only=True)["agent"]["averaged_actor"]
        weights = torch.load(run / "seed0" / "policy.pt", weights_only=True)["weights"]
        assert weights.keys() == averaged.keys() and all(torch.equal(weights[k], averaged[k]) for k in weights)
    assert main(["evaluate", "--env", env, "--method", method, "--profile", "smoke", "--quiet", "--runs", str(run),
                 "--out", str(run / "eval.csv")]) == 0
    with open(run / "eval.csv") as f:
        assert len(list(csv.DictReader(f))) == SMOKE["evaluate"]["episodes"]


def latent_view(latent_dim: int = 3, **kwargs) -> LatentView:
    return LatentView(VAE(image_size=16, latent_dim=latent_dim, encoder_channels=[8], decoder_channels=[8, 8]).eval(),
                      **kwargs)


@pytest.mark.parametrize("history", [{"frames": 3}, {}])
def test_reencoded_observations_are_the_observed_ones(history):
    """The replay's re-encoding rebuilds an episode's observations as `observe` builds them step by step."""
    view = latent_view(**history)
    images = np.random.default_rng(1).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    observed = [view.observe(SimpleNamespace(image=image)) for image in images]
    z = np.stack([view.encode(image[None])[0] for image in images])
    np.testing.assert_array_equal(np.stack([achieved for _, achieved in observed]), z)
    np.testing.assert_allclose(view.episode_observations(z), np.stack([obs for obs, _ in observed]), atol=1e-6)
    view.reset()  # a new episode forgets the last one's latents
    np.testing.assert_allclose(view.observe(SimpleNamespace(image=images[3]))[0], view.episode_observations(z[3:4])[0],
                               atol=1e-6)


def test_latent_frames_mean_what_they_say():
    z = np.arange(12, dtype=np.float32).reshape(4, 3) ** 2
    stacked = latent_view(frames=3).episode_observations(z)
    assert stacked.shape == (4, 9)
    np.testing.assert_array_equal(stacked[3], np.concatenate([z[1], z[2], z[3]]))  # oldest first
    np.testing.assert_array_equal(stacked[1], np.concatenate([z[0], z[0], z[1]]))  # the first repeats
    np.testing.assert_array_equal(latent_view().episode_observations(z), z)


@pytest.mark.parametrize("retired", ["image_agents.latent_velocity=true", "crl.loss=binary", "td3.absorbing=kept",
                                     "image_agents.td3.absorbing=farthest", "tdm.eval_tau=countdown"])
def test_a_retired_option_fails_in_one_line_naming_its_tag(retired, workdir, capsys):
    """A retired option, in --set or in params.yaml, names the git tag that has it."""
    assert main(["train", "--env", "point_maze", "--method", "rig", "--profile", "smoke", "--quiet",
                 "--set", retired, "--vae", str(workdir / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert retired.split("=")[0].removeprefix("image_agents.") in err and RETIRED_TAG in err and "Traceback" not in err
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    keys, value = parse_override(retired)
    node = params
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    Path("retired.yaml").write_text(yaml.safe_dump(params))
    assert main(["train", "--env", "point_maze", "--method", "rig", "--profile", "smoke", "--quiet",
                 "--params", "retired.yaml", "--vae", str(workdir / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert "retired.yaml" in err and RETIRED_TAG in err and "Traceback" not in err


def test_train_without_a_vae_fails_in_one_line(workdir, capsys):
    assert main(["train", "--env", "fetch_reach", "--method", "rig", "--profile", "smoke", "--quiet",
                 "--vae", str(workdir / "missing.pt")]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in err
    assert "VAE checkpoint not found" in errors[0] and "train-vae" in errors[0]


def test_a_vae_of_another_latent_size_fails_in_one_line(workdir, env_vae, capsys, env="point_maze"):
    """A run records its parameters; given a VAE whose latent is not vae.latent_dim, those would not be
    what it read, so it refuses in one line that names the --set, and leaves no run behind."""
    vae = env_vae(env) / "vae.pt"  # the smoke profile's latent: 4
    run = workdir / paths.root("smoke") / env / "rig_other_latent" / "seed0"
    assert main(["train", "--env", env, "--method", "rig", "--profile", "smoke", "--quiet", "--out", str(run),
                 "--vae", str(vae), "--set", "vae.latent_dim=6"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "has 4 latent dimensions but vae.latent_dim is 6" in errors[0]
    assert "--set vae.latent_dim=4" in errors[0] and not run.exists()


# --- TDM -----------------------------------------------------------------------------------------
def tdm_agent(distance="vectorized", latent_dim=3, **kwargs) -> TDMAgent:
    cfg = TDMConfig(tau_max=5, distance=distance, **kwargs)
    return TDMAgent(latent_dim, 2, -np.ones(2), np.ones(2), TD3Config(hidden=[16]), cfg, np.random.default_rng(0))


@pytest.mark.parametrize("distance", ["vectorized", "norm"])
def test_tdm_target_at_tau_zero_is_the_latent_distance(distance):
    agent = tdm_agent(distance)
    torch.manual_seed(0)
    n, d = 64, 3
    goal, next_z = torch.randn(n, d), torch.randn(n, d)
    next_x = agent.normalize(torch.cat([next_z, goal, torch.zeros(n, 1)], dim=-1))
    tau, alive = torch.zeros(n), torch.zeros(n)
    target = agent.targets(goal, next_x, next_z, tau, alive)
    expected = -(next_z - goal).abs() if distance == "vectorized" else -torch.linalg.vector_norm(next_z - goal, dim=-1)
    torch.testing.assert_close(target, expected)
    # tau > 0 bootstraps from the target critics instead: not the one-step distance...
    target = agent.targets(goal, next_x, next_z, torch.full((n,), 3.0), alive)
    assert not torch.allclose(target, expected)
    # ... unless the step ended the episode: the agent stays where it fell, at every horizon.
    fell = torch.arange(n) % 2 == 0
    target = agent.targets(goal, next_x, next_z, torch.full((n,), 3.0), fell.float())
    torch.testing.assert_close(target[fell], expected[fell])
    assert not torch.allclose(target[~fell], expected[~fell])


def test_tdm_bootstrap_is_the_min_of_the_target_critics():
    agent = tdm_agent("vectorized")
    agent.cfg.target_noise = 0.0
    n = 32
    goal, next_z = torch.randn(n, 3), torch.randn(n, 3)
    next_x = agent.normalize(torch.cat([next_z, goal, torch.full((n, 1), 0.4)], dim=-1))
    target = agent.targets(goal, next_x, next_z, torch.full((n,), 2.0), torch.zeros(n))
    with torch.no_grad():
        f1, f2 = agent.critic_target(next_x, agent.actor_target.from_normalized(next_x))
    torch.testing.assert_close(target, torch.min(-(f1 - goal).abs(), -(f2 - goal).abs()))


def test_tdm_rollout_horizon_counts_down_and_resets():
    assert [countdown(t, 3) for t in range(9)] == [3, 2, 1, 0, 3, 2, 1, 0, 3]


@pytest.mark.parametrize("training, eval_tau, expected", [
    (False, 0, [0] * 6), (False, 2, [2] * 6),
    (True, 0, [3, 2, 1, 0, 3, 2])])
def test_tdm_policy_acts_with_the_configured_horizon(training, eval_tau, expected):
    """The tau input the policy gives the actor at each step of an episode: the countdown in
    training rollouts, `eval_tau` in evaluation; a skipped (random) step moves the countdown on."""
    seen = []

    class Actor(torch.nn.Module):
        action_scale, action_bias = torch.ones(2), torch.zeros(2)

        def forward(self, x):
            seen.append(round(float(x[0, -1]) * 3))  # tau / tau_max, tau_max = 3
            return torch.zeros(1, 2)

    policy = TDMAgent.make_policy(Actor(), None, TDMConfig(tau_max=3, eval_tau=eval_tau), training)
    policy.reset(0)
    for _ in range(6):
        policy(np.zeros(2, np.float32), np.zeros(2, np.float32))
    assert seen == expected
    policy.reset()
    policy.skip()
    policy(np.zeros(2, np.float32), np.zeros(2, np.float32))
    assert seen[-1] == expected[1]


def test_eval_tau_beyond_tau_max_fails_in_one_line(workdir, env_vae, capsys, env="point_maze"):
    env_vae(env)
    run = workdir / paths.root("smoke") / env / "tdm_bad_tau" / "seed0"
    assert main(["train", "--env", env, "--method", "tdm", "--profile", "smoke", "--quiet", "--out", str(run),
                 "--set", "tdm.eval_tau=4"]) == 2  # smoke: tau_max 3
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "tdm.eval_tau=4 exceeds tdm.tau_max=3" in errors[0]
    assert not run.exists()


def test_argmax_selection_never_does_worse_than_the_policy_action():
    agent = tdm_agent(action_selection="argmax", candidates=64)
    obs, goal = np.zeros(3, np.float32), np.ones(3, np.float32)
    x = torch.as_tensor(np.concatenate([obs, goal, [1 / 5]]), dtype=torch.float32)[None]  # tau 1 of tau_max 5
    agent.tdm.eval_tau = 1
    chosen = torch.as_tensor(agent.policy(training=False)(obs, goal))[None].float()
    with torch.no_grad():
        xn = agent.normalize(x)
        q = lambda a: (-(agent.critic(xn, a)[0] - torch.as_tensor(goal)).abs()).sum()
        assert q(chosen) >= q(agent.actor.from_normalized(xn))


# --- relabelling and the prior -------------------------------------------------------------------
def test_relabelling_mixture_has_the_configured_proportions():
    marker = 123.0
    relabel = SMOKE["rig"]["relabel"]
    replay = EpisodeReplay(1000, 10, (3,), 3, 2, relabel=relabel, reward_fn=negative_distance,
                           goal_sampler=lambda n, rng: np.full((n, 3), marker, np.float32))
    rng = np.random.default_rng(0)
    for _ in range(30):
        replay.add_episode(rng.normal(size=(11, 3)), rng.normal(size=(11, 3)), rng.normal(size=3),
                           rng.uniform(-1, 1, (10, 2)), np.zeros(10), np.zeros(10))
    n = 20000
    batch = replay.sample(n, rng)
    for name in STRATEGIES[1:]:
        share = float(np.mean(batch["strategy"] == STRATEGIES.index(name)))
        expected = relabel.get(name, 0.0)
        assert abs(share - expected) < 4 * np.sqrt(expected * (1 - expected) / n) + 1e-12, name
    prior = batch["strategy"] == STRATEGIES.index("prior")
    assert np.all(batch["goal"][prior] == marker) and not np.any(batch["goal"][~prior] == marker)
    np.testing.assert_allclose(batch["reward"], -np.linalg.norm(batch["next_achieved"] - batch["goal"], axis=-1),
                               rtol=1e-6)


def test_imagined_goals_have_the_fitted_prior_mean_and_std():
    vae = VAE(latent_dim=4)
    vae.prior_mean.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
    vae.prior_std.copy_(torch.tensor([0.1, 1.0, 3.0, 0.5]))
    samples = LatentView(vae).sample_prior(50000, np.random.default_rng(0))
    np.testing.assert_allclose(samples.mean(0), vae.prior_mean.numpy(), atol=0.05)
    np.testing.assert_allclose(samples.std(0), vae.prior_std.numpy(), rtol=0.02)


def test_finetuning_reencodes_the_stored_latents():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    vae = VAE(image_size=16, latent_dim=4, encoder_channels=[8], decoder_channels=[8, 8]).eval()
    replay = EpisodeReplay(100, 5, (4,), 4, 2, relabel={"future": 0.5}, reward_fn=negative_distance,
                           image_shape=(16, 16, 3))
    for _ in range(6):
        images = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
        z = vae.encode(images)
        replay.add_episode(z, z, z[-1], rng.uniform(-1, 1, (5, 2)), np.zeros(5), np.zeros(5), images=images)
    before = replay.obs[: replay.size].copy()
    cfg = {"steps": 3, "batch_size": 8, "replay_fraction": 0.5, "lr": 1e-2}
    tuner = VAEFineTuner(vae, rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8), cfg,
                         {"beta": 1.0, "recon_loss": "mse"})
    LatentView(vae, tuner=tuner).finetune(replay, rng)
    for e in range(replay.size):
        n = replay.length[e] + 1
        expected = vae.encode(replay.images[e, :n])
        np.testing.assert_allclose(replay.obs[e, :n], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(replay.achieved[e, :n], replay.obs[e, :n])
    assert not np.allclose(before, replay.obs[: replay.size])
    # With stacked latents, obs are rebuilt from the new latents the same way.
    view = LatentView(vae, tuner=tuner, frames=3)
    stacked = EpisodeReplay(100, 5, (12,), 4, 2, relabel={}, reward_fn=negative_distance, image_shape=(16, 16, 3))
    for e in range(replay.size):
        z = replay.achieved[e]
        stacked.add_episode(view.episode_observations(z), z, z[-1], replay.action[e], np.zeros(5), np.zeros(5),
                            images=replay.images[e])
    view.finetune(stacked, rng)
    for e in range(stacked.size):
        z = vae.encode(stacked.images[e])
        np.testing.assert_allclose(stacked.achieved[e], z, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(stacked.obs[e], view.episode_observations(z), rtol=1e-5, atol=1e-5)
