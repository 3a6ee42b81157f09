"""Off-policy learning with demonstrations: the Q-filter keeps only the rows it should, its BC term
falls on a toy problem, every batch holds the demonstrations' share of rows (their own actions),
and a run with them trains, records and resumes like any other."""

import numpy as np
import pytest
import torch
from tqdm import tqdm

from conftest import run_cli
from visgoal.agents.demonstrations import q_filtered_bc, to_unit
from visgoal.agents.networks import Actor
from visgoal.agents.workspace import Workspace
from visgoal.config import load_params


def test_q_filter_keeps_demonstration_rows_whose_action_the_critic_prefers():
    action = torch.zeros(5, 2, requires_grad=True)
    demo_action = torch.ones(5, 2)
    q_demo = torch.tensor([1.0, 0.0, 2.0, 5.0, -1.0])
    q_policy = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0])
    demo = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0])  # row 3 is the agent's own: never cloned
    loss, kept = q_filtered_bc(action, demo_action, q_demo, q_policy, demo)
    # kept: rows 0 and 2 (demonstrations the critic prefers); each costs ||0 - 1||^2 = 2; 4 demo rows
    assert kept.item() == pytest.approx(2 / 4)
    assert loss.item() == pytest.approx((2 + 2) / 4)
    loss.backward()
    assert action.grad[[1, 3, 4]].abs().sum() == 0 and action.grad[[0, 2]].abs().sum() > 0


def test_q_filtered_bc_clones_a_demonstrator_on_a_toy_problem():
    torch.manual_seed(0)
    teacher = torch.nn.Linear(6, 2)
    actor = Actor(6, 2, [32, 32], -np.ones(2), np.ones(2), normalize=False)
    opt = torch.optim.Adam(actor.parameters(), lr=3e-3)
    states = torch.randn(256, 6)
    with torch.no_grad():
        targets = torch.tanh(teacher(states))
    ones, zeros = torch.ones(256), torch.zeros(256)

    def loss():
        return q_filtered_bc(actor(states), targets, ones, zeros, ones)[0]

    first = loss().item()
    for _ in range(300):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < 0.05 * first


def test_actions_come_back_to_the_agents_unit_box():
    low, high = np.array([-2.0, 0.0]), np.array([2.0, 1.0])
    assert np.allclose(to_unit(np.array([[2.0, 0.5], [-1.0, 0.0]]), low, high), [[1.0, 0.0], [-0.5, -1.0]])


@pytest.fixture(scope="module")
def kitchen_demos(smoke_demos):
    return smoke_demos("franka_kitchen")


def with_demos(**learning):
    overrides = ["demo_learning.enabled=true", *(f"demo_learning.{k}={v}" for k, v in learning.items())]
    return load_params(profile="smoke", overrides=overrides)


def test_every_batch_holds_the_demonstrations_share_with_their_own_actions(kitchen_demos, workdir):
    from visgoal.data.demos import read_demos

    params = with_demos(batch_share=0.25)
    workspace = Workspace("franka_kitchen", "td3", 0, workdir / "run", params, demos=kitchen_demos, progress=False)
    try:
        demos = read_demos(kitchen_demos, state=True)
        replay = workspace.demo_replay
        assert replay.steps == int(demos["length"].sum()) and replay.replay.size == len(demos["length"])
        workspace.bar = tqdm(disable=True)
        workspace.run_episode(params["train"]["learning_starts"])  # something of its own to sample
        batch = workspace.sample()
        rows = round(0.25 * workspace.agent.batch_size)
        assert len(batch["demo"]) == workspace.agent.batch_size and batch["demo"].sum().item() == rows
        assert torch.all(batch["demo"][-rows:] == 1)
        demo_actions = torch.as_tensor(to_unit(demos["actions"], workspace.env.action_space.low,
                                               workspace.env.action_space.high))
        for action in batch["action"][-rows:]:  # each a demonstrated action, in the agent's box
            assert torch.isclose(demo_actions, action).all(1).any()
        metrics = workspace.agent.update(batch)
        metrics.update(workspace.agent.update(workspace.sample()))  # the second runs the actor (policy_delay 2)
        assert {"losses/bc", "demos/q_filter_kept"} <= set(metrics)
        assert 0.0 <= metrics["demos/q_filter_kept"] <= 1.0
    finally:
        workspace.close()


def test_without_demonstrations_a_batch_has_no_mask_and_the_file_is_not_read(workdir):
    params = load_params(profile="smoke")
    workspace = Workspace("franka_kitchen", "td3", 0, workdir / "plain", params, demos=workdir / "nowhere.h5",
                          progress=False)
    try:
        assert workspace.demo_replay is None and "demonstrations" not in workspace.input_files()
        workspace.bar = tqdm(disable=True)
        workspace.run_episode(params["train"]["learning_starts"])
        assert "demo" not in workspace.sample()
    finally:
        workspace.close()


@pytest.mark.parametrize("method, sets", [("td3", []), ("crl", ["crl.representation=pixels"])])
def test_a_run_with_demonstrations_trains_and_records_them(kitchen_demos, workdir, method, sets):
    out = workdir / f"{method}-demos"
    result = run_cli("train", "--env", "franka_kitchen", "--method", method, "--seed", "0", "--out", str(out),
                     "--demos", str(kitchen_demos), "--quiet", "--set", "demo_learning.enabled=true",
                     *[arg for s in sets for arg in ("--set", s)])
    assert result.returncode == 0, result.stderr
    assert (out / "policy.pt").is_file() and (out / "curve.csv").is_file()


def test_a_missing_demonstrations_file_is_one_line(workdir):
    result = run_cli("train", "--env", "franka_kitchen", "--method", "td3", "--seed", "0", "--out",
                     str(workdir / "missing"), "--demos", str(workdir / "none.h5"), "--quiet",
                     "--set", "demo_learning.enabled=true")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "demonstrations not found" in result.stderr


def test_latent_demonstrations_are_the_vaes_codes_and_follow_its_fine_tuning(kitchen_demos, smoke_vae, smoke_dataset):
    from visgoal.agents.demonstrations import DemoReplay
    from visgoal.agents.replay import no_reward
    from visgoal.agents.views import LatentView
    from visgoal.data.demos import read_demos

    params = load_params(profile="smoke")  # fine-tuning on: the replay keeps the pictures
    view = LatentView.from_params(params, smoke_vae, smoke_dataset, 0)
    demos = read_demos(kitchen_demos)
    replay = DemoReplay(demos, view, {"relabel": {}, "reward_fn": no_reward}, ("obs", "goal", "action"), False,
                        -np.ones(9), np.ones(9))
    n = int(demos["length"][0]) + 1
    z = view.encode(demos["obs"][:n])
    assert np.allclose(replay.replay.achieved[0, :n], z)
    assert np.allclose(replay.replay.obs[0, :n], view.episode_observations(z))
    assert np.allclose(replay.replay.goal[0], view.encode(demos["goal"][:1])[0])
    with torch.no_grad():  # the VAE changes (as fine-tuning changes it): refresh encodes again
        for weight in view.vae.parameters():
            weight.add_(0.05)
    replay.refresh()
    assert np.allclose(replay.replay.achieved[0, :n], view.encode(demos["obs"][:n]))
    assert not np.allclose(replay.replay.achieved[0, :n], z)
    assert np.allclose(replay.replay.goal[0], view.encode(demos["goal"][:1])[0])


def test_gcbc_clones_the_demonstrations_offline_and_evaluates_like_any_method(kitchen_demos, workdir):
    params = load_params(profile="smoke", overrides=["gcbc.representation=pixels"])
    workspace = Workspace("franka_kitchen", "gcbc", 0, workdir / "gcbc" / "seed0", params, demos=kitchen_demos,
                          progress=False)
    try:
        torch.manual_seed(1)
        batch = workspace.sample()  # one fixed batch: its loss before and after training
        assert len(batch["action"]) == workspace.agent.batch_size and "demo" not in batch
        before = bc_loss(workspace.agent, batch)
        workspace.run()
        assert bc_loss(workspace.agent, batch) < 0.5 * before
        assert workspace.env_steps == params["train"]["total_steps"]  # its updates: it never stepped its env
        assert workspace.replay.size == 0
    finally:
        workspace.close()
    out = workdir / "gcbc_eval.csv"
    result = run_cli("evaluate", "--env", "franka_kitchen", "--method", "gcbc", "--runs", str(workdir / "gcbc"),
                     "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert len(out.read_text().splitlines()) == 1 + params["evaluate"]["episodes"]


def bc_loss(agent, batch) -> float:
    with torch.no_grad():
        x = torch.cat(agent.encoder(torch.cat([batch["obs"], batch["goal"]])).chunk(2), dim=-1)
        return ((agent.actor.from_normalized(x) - batch["action"]) ** 2).sum(-1).mean().item()


def test_gcbc_without_demonstrations_is_one_line(workdir):
    result = run_cli("train", "--env", "franka_kitchen", "--method", "gcbc", "--out", str(workdir / "none"),
                     "--demos", str(workdir / "none.h5"), "--quiet", "--set", "gcbc.representation=pixels")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "demonstrations not found" in result.stderr


def test_without_the_q_filter_every_demonstration_row_is_cloned(kitchen_demos, workdir):
    params = with_demos(q_filter="false")
    workspace = Workspace("franka_kitchen", "td3", 0, workdir / "unfiltered", params, demos=kitchen_demos,
                          progress=False)
    try:
        workspace.bar = tqdm(disable=True)
        workspace.run_episode(params["train"]["learning_starts"])
        workspace.agent.update(workspace.sample())
        metrics = workspace.agent.update(workspace.sample())  # the actor's turn
        assert metrics["demos/q_filter_kept"] == 1.0 and metrics["losses/bc"] > 0
    finally:
        workspace.close()
