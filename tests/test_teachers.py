"""The scripted teachers: they reach the goal on the protocol's smoke episodes, act only through the
env's actions (replayed in a fresh env, the actions give the same states), and stay in the action space."""

import dataclasses

import numpy as np
import pytest

from visgoal.config import load_params
from visgoal.envs import make_env
from visgoal.envs.core import ImageGoalEnv, load_spec
from visgoal.evaluation import COLUMNS, episode_seed
from visgoal.teachers import damped_least_squares, make_teacher, run_teacher_episodes, teacher_agent

TEACHER_ENVS = ["franka_kitchen", "adroit_relocate"]


def smoke_seeds() -> list[int]:
    """The reset seeds of the smoke profile's protocol episodes."""
    cfg = load_params(profile="smoke")["evaluate"]
    return [episode_seed(cfg["eval_seed"], i) for i in range(cfg["episodes"])]


@pytest.fixture(scope="module")
def envs():
    """Two envs of each teacher's environment, without pictures: the teachers read the simulator."""
    made = {name: [make_env(name, render_images=False) for _ in range(2)] for name in TEACHER_ENVS}
    yield made
    for pair in made.values():
        for env in pair:
            env.close()


def recorded_episode(env, seed: int) -> tuple[dict, list[np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
    """The teacher's episode from `seed` through the protocol's loop: its result row, each action, and
    the simulator's (qpos, qvel) after each step."""
    actions, states = [], []

    def watch(k, step, action):
        if action is not None:
            actions.append(np.array(action, copy=True))
            states.append((env.data.qpos.copy(), env.data.qvel.copy()))

    row = run_teacher_episodes([env], [seed], watch=watch)[0]
    return row, actions, states


def test_the_kitchen_teacher_opens_the_door_on_the_smoke_episodes(envs):
    seeds = smoke_seeds()
    rows = run_teacher_episodes(envs["franka_kitchen"], seeds)  # stepped together, as `evaluate.batch` does
    assert len(rows) == len(seeds) >= 2
    assert all(row["success"] for row in rows), rows
    assert all(row["final_distance"] < 0.3 for row in rows)  # the door within 0.3 rad of -0.75
    assert set(rows[0]) == set(COLUMNS) - {"env", "method", "seed", "episode"}


def test_the_kitchen_teacher_holds_the_door_open_to_the_last_step():
    """With the kitchen's early end switched off, the door must still be open at step 280."""
    spec = load_spec("franka_kitchen")
    spec = dataclasses.replace(spec, make_kwargs={**spec.make_kwargs, "terminate_on_tasks_completed": False})
    with ImageGoalEnv(spec, render_images=False) as env:
        row = run_teacher_episodes([env], smoke_seeds()[:1])[0]
        assert row["steps"] == spec.episode_length
        assert row["success"], row
        assert env.task.achieved_goal()[0] < -0.6  # open well past the success threshold (-0.45)


def test_the_relocate_teacher_lifts_the_ball_to_the_target_on_the_smoke_episodes(envs):
    seeds = smoke_seeds()
    lifted = {}

    def watch(k, step, action):
        lifted[k] = max(lifted.get(k, 0.0), float(step.achieved_goal[2]))  # the ball's height (it rests at 0.035)

    rows = run_teacher_episodes(envs["adroit_relocate"], seeds, watch=watch)
    assert all(row["success"] for row in rows), rows
    assert all(height > 0.12 for height in lifted.values()), lifted  # every target is at least 0.15 up


@pytest.mark.parametrize("name", TEACHER_ENVS)
def test_replayed_actions_give_the_same_states(envs, name):
    """The teacher changes the world only through env.step: its actions, replayed in a fresh env from the
    same reset, give the same simulator states, step for step; and every action is in the action space."""
    seed = smoke_seeds()[0]
    row, actions, states = recorded_episode(envs[name][0], seed)
    assert len(actions) == row["steps"] > 0
    space = envs[name][0].action_space
    for action in actions:
        assert action.shape == space.shape and np.all(np.isfinite(action))
        assert np.all(action >= space.low) and np.all(action <= space.high)
    with make_env(name, render_images=False) as fresh:
        fresh.reset(seed=seed)
        for t, (action, (qpos, qvel)) in enumerate(zip(actions, states)):
            fresh.step(action)
            assert np.array_equal(fresh.data.qpos, qpos) and np.array_equal(fresh.data.qvel, qvel), f"step {t}"


def test_a_view_that_meets_another_envs_step_says_so(envs):
    """The teacher's view knows its env by position: a step from another env fails loudly."""
    pair = envs["adroit_relocate"]
    view, policy = teacher_agent(pair)
    first, second = view.for_episode(), view.for_episode()
    with pytest.raises(ValueError, match="more episodes"):
        view.for_episode()
    policy.reset([1, 2])  # a new batch hands the views out from the first env again
    steps = [env.reset(seed=seed) for env, seed in zip(pair, [1, 2])]  # two balls in two places
    assert first.observe(steps[0])[0][0] == 0 and second.observe(steps[1])[0][0] == 1
    with pytest.raises(RuntimeError, match="not its env's"):
        first.observe(steps[1])
    assert view.for_episode().index == 0


def test_damped_least_squares_never_pushes_a_joint_past_its_limit():
    jac = np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 1.0]])
    low, high = np.full(3, -1.0), np.full(3, 1.0)
    # Joint 0 starts past its lower limit (as the Franka's joint 2 does) and the task pulls it further:
    # it is moved back in by at most `push`, and the others do the task.
    q = np.array([-1.1, 0.0, 0.0])
    dq = damped_least_squares(jac, np.array([-0.3, 0.2]), q, low, high, push=0.02)
    assert 0 < dq[0] <= 0.02
    assert np.allclose(jac @ dq, [-0.3, 0.2], atol=0.05)
    # A joint next to its upper limit that the task would carry across is held there.
    q = np.array([0.0, 0.95, 0.0])
    dq = damped_least_squares(jac, np.array([0.0, 0.5]), q, low, high)
    assert q[1] + dq[1] <= high[1]
    assert np.all(q + dq >= low) and np.all(q + dq <= high)


def test_an_env_without_a_teacher_is_refused():
    with make_env("inverted_pendulum", render_images=False) as env:
        with pytest.raises(ValueError, match="no scripted teacher for 'inverted_pendulum'"):
            make_teacher(env)


def test_evaluate_method_teacher_writes_the_protocols_files_with_no_runs(workdir):
    """`visgoal evaluate --method teacher`: no training and no runs to read; the smoke profile's
    protocol episodes as one seed, each a success, in `teacher_eval.csv` and its summary. Runs, a VAE
    or seeds asked of it are refused in one line, and leave nothing behind."""
    import json

    from visgoal.cli import main

    out = workdir / "teacher" / "teacher_eval.csv"
    assert main(["evaluate", "--env", "franka_kitchen", "--method", "teacher", "--profile", "smoke", "--quiet",
                 "--out", str(out)]) == 0
    rows = out.read_text().splitlines()
    assert rows[0].split(",") == list(COLUMNS)
    assert len(rows) == 1 + load_params(profile="smoke")["evaluate"]["episodes"]
    assert all(row.split(",")[2] == "0" and row.split(",")[5] == "True" for row in rows[1:])  # seed 0, success
    assert json.loads(out.with_suffix(".json").read_text())["success_rate"] == 1.0
    refused = workdir / "refused" / "teacher_eval.csv"
    for extra in (["--runs", str(workdir)], ["--seeds", "1"]):
        assert main(["evaluate", "--env", "franka_kitchen", "--method", "teacher", "--profile", "smoke", "--quiet",
                     "--out", str(refused), *extra]) != 0
    assert not refused.exists()
